package lua

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Without Config.Unsafe, the files a script reaches through sqlite
// (sqlite.open, ATTACH, VACUUM INTO) and template (a library's directory)
// must lie inside one directory, Config.DataDir. Paths mean what they mean
// to SQLite and the os package (a relative one starts at the working
// directory); dataPath checks that one stays inside, following symbolic
// links through os.Root, which refuses any that leads out.

// dataDirectory resolves the data directory of cfg: absolute, and with
// its symbolic links resolved as well (a path may be written either way).
func dataDirectory(cfg Config) (abs, real string, err error) {
	dir := cfg.DataDir
	if dir == "" {
		dir = "."
	}
	if abs, err = filepath.Abs(dir); err != nil {
		return "", "", fmt.Errorf("lua: --data-dir %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", "", fmt.Errorf("lua: --data-dir: %w", err)
	}
	if !fi.IsDir() {
		return "", "", fmt.Errorf("lua: --data-dir %s is not a directory", dir)
	}
	if real, err = filepath.EvalSymlinks(abs); err != nil {
		return "", "", fmt.Errorf("lua: --data-dir: %w", err)
	}
	return abs, real, nil
}

// sqliteSideFiles are the files SQLite keeps beside a database: a link
// planted under one of these names must not lead out either.
var sqliteSideFiles = []string{"-wal", "-shm", "-journal"}

// dataPath checks that name stays inside the data directory and returns
// it absolute. dir: name must be an existing directory; otherwise a file
// that exists, or may be created in an existing directory, with each of
// sides (suffixes of files kept beside it) checked as well. The error is
// the script's: it says why, without --unsafe-script.
func (rt *Runtime) dataPath(name string, dir bool, sides ...string) (string, error) {
	refuse := func(why string, args ...any) (string, error) {
		return "", fmt.Errorf("%q: %s (without --unsafe-script, sqlite and template reach only files inside --data-dir %s)",
			name, fmt.Sprintf(why, args...), rt.dataDir)
	}
	if name == "" || strings.ContainsRune(name, 0) {
		return refuse("not a file name")
	}
	for _, el := range strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == filepath.Separator }) {
		if el == ".." {
			return refuse("a path may not contain ..")
		}
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		return refuse("%v", err)
	}
	rel, ok := within(rt.dataDir, abs)
	if !ok {
		rel, ok = within(rt.dataDirReal, abs)
	}
	if !ok {
		return refuse("outside --data-dir")
	}
	root, err := os.OpenRoot(rt.dataDir)
	if err != nil {
		return refuse("%v", err)
	}
	defer root.Close()
	if dir {
		fi, err := root.Stat(rel)
		if err != nil {
			return refuse("%v", rootError(err))
		}
		if !fi.IsDir() {
			return refuse("not a directory")
		}
		return abs, nil
	}
	if err := checkDataFile(root, rel, true); err != nil {
		return refuse("%v", err)
	}
	for _, s := range sides {
		if err := checkDataFile(root, rel+s, false); err != nil {
			return refuse("%s: %v", filepath.Base(rel+s), err)
		}
	}
	return abs, nil
}

// checkDataFile checks the file rel of root: if it is a symbolic link, it
// must lead to an existing file inside root; if it does not exist, its
// directory must (when creatable: sqlite creates it there).
func checkDataFile(root *os.Root, rel string, creatable bool) error {
	fi, err := root.Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist) && creatable:
		d, err := root.Stat(filepath.Dir(rel))
		if err != nil {
			return rootError(err)
		}
		if !d.IsDir() {
			return errors.New("its directory is not a directory")
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return rootError(err)
	case fi.Mode()&fs.ModeSymlink != 0:
		t, err := root.Stat(rel)
		if err != nil {
			return fmt.Errorf("a symbolic link that leads out of --data-dir or nowhere (%v)", rootError(err))
		}
		if t.IsDir() {
			return errors.New("a directory")
		}
	case fi.IsDir():
		return errors.New("a directory")
	}
	return nil
}

// rootError is err without the path os.Root puts in front of it (the
// caller names the path).
func rootError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// within is path relative to dir, if path is dir or inside it.
func within(dir, path string) (string, bool) {
	if dir == "" {
		return "", false
	}
	rel, err := filepath.Rel(dir, path)
	if err != nil || filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", false
	}
	return rel, true
}
