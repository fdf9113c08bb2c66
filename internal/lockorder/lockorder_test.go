package lockorder

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestEveryLockIsListed finds every field or variable of type sync.Mutex
// or sync.RWMutex (or a pointer to one) in the module's non-test Go files
// and checks that locksordering.txt lists exactly those.
func TestEveryLockIsListed(t *testing.T) {
	root := moduleRoot(t)
	found := map[string]string{} // name -> position
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || name == "node_modules" || strings.HasPrefix(name, ".") || isModule(path)) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		for name, pos := range locksIn(t, path, filepath.ToSlash(rel)) {
			found[name] = pos
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	listed := listedLocks(t, filepath.Join(root, "locksordering.txt"))
	for name, pos := range found {
		if !listed[name] {
			t.Errorf("%s: lock %s is not in locksordering.txt (say what it guards and where it stands in the order)", pos, name)
		}
	}
	for name := range listed {
		if _, ok := found[name]; !ok {
			t.Errorf("locksordering.txt lists %s, which is no longer in the code", name)
		}
	}
	if len(found) < 10 {
		t.Fatalf("found only %d locks: the walk is broken", len(found))
	}
}

func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for !isModule(dir) {
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	return dir
}

func isModule(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "go.mod"))
	return err == nil
}

// locksIn returns the locks declared in one file, named dir.Type.field or
// dir.function.variable.
func locksIn(t *testing.T, path, dir string) map[string]string {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	syncName := "" // the name sync is imported under in this file
	for _, imp := range f.Imports {
		if imp.Path.Value == `"sync"` {
			syncName = "sync"
			if imp.Name != nil {
				syncName = imp.Name.Name
			}
		}
	}
	out := map[string]string{}
	if syncName == "" {
		return out
	}
	isLock := func(e ast.Expr) bool {
		if st, ok := e.(*ast.StarExpr); ok {
			e = st.X
		}
		sel, ok := e.(*ast.SelectorExpr)
		if !ok {
			return false
		}
		pkg, ok := sel.X.(*ast.Ident)
		return ok && pkg.Name == syncName && (sel.Sel.Name == "Mutex" || sel.Sel.Name == "RWMutex")
	}
	add := func(owner string, names []*ast.Ident, pos token.Pos) {
		for _, n := range names {
			out[dir+"."+owner+"."+n.Name] = fset.Position(pos).String()
		}
	}
	// owner names the innermost declaration: a type, else a function.
	var walk func(n ast.Node, owner string)
	walk = func(n ast.Node, owner string) {
		ast.Inspect(n, func(c ast.Node) bool {
			switch c := c.(type) {
			case *ast.FuncDecl:
				if c != n {
					walk(c, c.Name.Name)
					return false
				}
			case *ast.TypeSpec:
				if c != n {
					walk(c, c.Name.Name)
					return false
				}
			case *ast.Field:
				if isLock(c.Type) {
					add(owner, c.Names, c.Pos())
				}
			case *ast.ValueSpec:
				if c.Type != nil && isLock(c.Type) {
					add(owner, c.Names, c.Pos())
				}
			}
			return true
		})
	}
	walk(f, "")
	for name := range out {
		if strings.Contains(name, "..") {
			t.Errorf("%s: a package-level lock; give it an owner type", name)
		}
	}
	return out
}

var listedRE = regexp.MustCompile(`^\s+([a-z0-9_/]+\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+)\s`)

func listedLocks(t *testing.T, path string) map[string]bool {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]bool{}
	var order []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := listedRE.FindStringSubmatch(sc.Text() + " "); m != nil {
			if out[m[1]] {
				t.Errorf("locksordering.txt lists %s twice", m[1])
			}
			out[m[1]] = true
			order = append(order, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(order, "engine.shard.mu") {
		t.Fatalf("locksordering.txt: no entries parsed")
	}
	return out
}
