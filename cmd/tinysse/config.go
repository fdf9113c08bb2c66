package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
	"github.com/spf13/pflag"
)

// The config file (--config FILE, TOML): one key per option, named as the
// long option (listen, keep-alive, max-body-size), at the top level.
// Values are TOML strings, integers or booleans, read as the option reads
// its text ("60s", "64KB" or 65536, true). Precedence: a flag on the
// command line, then its TINYSSE_* variable, then the file, then the
// default. A key that names no option, a table, or a value of the wrong
// kind is an error naming the file and line.

// configKey is one top-level key of the file and where it is.
type configKey struct {
	name string
	line int
}

// loadConfig applies the file at path to the flags of fs that neither the
// command line (Changed) nor the environment sets, and records in origin
// where each value it set came from ("FILE:LINE"). Called after fs.Parse,
// before the environment is read.
func loadConfig(fs *pflag.FlagSet, path string, getenv func(string) string, origin map[string]string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %v", err)
	}
	var tree map[string]any
	if err := toml.Unmarshal(data, &tree); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return fmt.Errorf("--config: %s:%d:%d: %s", path, row, col, strings.TrimPrefix(de.Error(), "toml: "))
		}
		return fmt.Errorf("--config: %s: %v", path, err)
	}
	keys := configKeys(data)
	for name := range tree {
		if !slices.ContainsFunc(keys, func(k configKey) bool { return k.name == name }) {
			keys = append(keys, configKey{name: name}) // not found by the scan: no line
		}
	}
	for _, k := range keys {
		where := path
		if k.line > 0 {
			where = fmt.Sprintf("%s:%d", path, k.line)
		}
		v, ok := tree[k.name]
		if !ok {
			continue
		}
		f := fs.Lookup(k.name)
		switch {
		case k.name == "config":
			return fmt.Errorf("--config: %s: a config file cannot name another (key %q)", where, k.name)
		case f != nil && noEnv[k.name]:
			return fmt.Errorf("--config: %s: %q is an action, not a setting: give it on the command line", where, k.name)
		case f == nil:
			return fmt.Errorf("--config: %s: unknown key %q (keys are the long option names, as in tinysse --help)", where, k.name)
		}
		text, err := configText(f, v)
		if err != nil {
			return fmt.Errorf("--config: %s: %s: %v", where, k.name, err)
		}
		if f.Changed || getenv(envName(f.Name)) != "" {
			continue // the command line or the environment wins
		}
		if err := setValue(f, text); err != nil {
			return fmt.Errorf("invalid value for --%s (from %s): %v", f.Name, where, err)
		}
		origin[f.Name] = where
	}
	return nil
}

// setValue sets f from text, a value read from the file or a variable.
func setValue(f *pflag.Flag, text string) error {
	err := f.Value.Set(text)
	if err != nil {
		switch f.Value.Type() { // pflag's own errors say strconv.ParseInt, ParseBool
		case "int", "int64":
			err = fmt.Errorf("%q is not a whole number", text)
		case "bool":
			err = fmt.Errorf("%q is not true or false", text)
		}
	}
	return err
}

// fromOrigin names where the value was read in err, an error of the
// checks made once every source is read ("invalid value for --NAME: ..."),
// when it came from the file or a variable: as the errors of values that
// do not read name it.
func fromOrigin(err error, origin map[string]string) error {
	const prefix = "invalid value for --"
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, prefix)
	if !ok {
		return err
	}
	name, tail, ok := strings.Cut(rest, ":")
	if where := origin[name]; ok && where != "" && !strings.ContainsAny(name, " ,(") {
		return originError{msg: fmt.Sprintf("%s%s (from %s):%s", prefix, name, where, tail), err: err}
	}
	return err
}

// originError is an error with its origin added to the message.
type originError struct {
	msg string
	err error
}

func (e originError) Error() string { return e.msg }
func (e originError) Unwrap() error { return e.err }

// configText is a TOML value as the text the flag reads.
func configText(f *pflag.Flag, v any) (string, error) {
	isBool := f.Value.Type() == "bool"
	switch x := v.(type) {
	case bool:
		if !isBool {
			return "", fmt.Errorf("want a %s, not a boolean", kindOf(f))
		}
		return strconv.FormatBool(x), nil
	case int64:
		if isBool || f.Value.Type() == "string" {
			return "", fmt.Errorf("want a %s, not a number", kindOf(f))
		}
		return strconv.FormatInt(x, 10), nil
	case string:
		if isBool {
			return "", errors.New("want true or false, not a string")
		}
		return x, nil
	case map[string]any:
		return "", errors.New("tables are not options: write each option as a key at the top level")
	case []any:
		return "", fmt.Errorf("want a %s, not a list (lists are one comma-separated string)", kindOf(f))
	case float64:
		return "", fmt.Errorf("want a %s, not a fraction", kindOf(f))
	}
	return "", fmt.Errorf("want a %s, not a date or time", kindOf(f))
}

// kindOf says what a flag's value is written as in the file.
func kindOf(f *pflag.Flag) string {
	switch f.Value.Type() {
	case "bool":
		return "boolean (true or false)"
	case "string":
		return "string"
	case "int", "int64":
		return "number"
	}
	return "string (" + f.Value.Type() + ")"
}

// configKeys lists the file's top-level keys (and table names) with their
// lines, in the file's order. The file has been parsed already, so a
// syntax error here only ends the list early.
func configKeys(data []byte) []configKey {
	var keys []configKey
	p := unstable.Parser{}
	p.Reset(data)
	inTable := false
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			inTable = true
		case unstable.KeyValue:
			if inTable {
				continue // a key of the table, which is refused as a whole
			}
		default:
			continue
		}
		it := e.Key()
		if !it.Next() {
			continue
		}
		k := it.Node()
		keys = append(keys, configKey{name: string(k.Data), line: p.Shape(k.Raw).Start.Line})
	}
	return keys
}
