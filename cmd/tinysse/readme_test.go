package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	units "github.com/docker/go-units"
)

// helpFlag is one option as --help prints it.
type helpFlag struct{ short, def string }

// helpFlags parses --help: long name -> short form and default.
func helpFlags(t *testing.T) map[string]helpFlag {
	t.Helper()
	var out bytes.Buffer
	if code := run([]string{"--help"}, env(), &out, &out, nil); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	line := regexp.MustCompile(`^\s+(?:-(\w), )?--([a-z0-9-]+)(?: \S+)?\s{2,}(.*)$`)
	def := regexp.MustCompile(`\(default (.*)\)$`)
	flags := map[string]helpFlag{}
	for _, l := range strings.Split(out.String(), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		f := helpFlag{short: m[1]}
		if d := def.FindStringSubmatch(m[3]); d != nil {
			f.def = d[1]
		}
		if noEnv[m[2]] == strings.Contains(l, "[env "+envName(m[2])+"]") {
			t.Errorf("--help line of --%s: variable %s shown %v, want %v", m[2], envName(m[2]), !noEnv[m[2]], !noEnv[m[2]])
		}
		flags[m[2]] = f
	}
	if len(flags) < 40 {
		t.Fatalf("parsed only %d flags from --help:\n%s", len(flags), out.String())
	}
	return flags
}

// readmeRow is one row of README's options table.
type readmeRow struct{ short, def, meaning string }

// readmeOptions parses the table under "## Options" in README.md: long
// name -> its row. A row may name two flags ("--tls-cert, --tls-key").
func readmeOptions(t *testing.T) (rows map[string]readmeRow, intro string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Options\n")
	if !ok {
		t.Fatal("README.md has no ## Options section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	rows = map[string]readmeRow{}
	long := regexp.MustCompile(`--([a-z0-9-]+)`)
	for _, l := range strings.Split(sec, "\n") {
		if !strings.HasPrefix(l, "| ") {
			if !strings.HasPrefix(l, "|-") {
				intro += l + "\n"
			}
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		if len(cells) != 4 || strings.TrimSpace(cells[1]) == "long" {
			continue
		}
		r := readmeRow{short: strings.TrimPrefix(strings.TrimSpace(cells[0]), "-"), def: strings.TrimSpace(cells[2]), meaning: cells[3]}
		for _, m := range long.FindAllStringSubmatch(cells[1], -1) {
			if _, dup := rows[m[1]]; dup {
				t.Errorf("README lists --%s twice", m[1])
			}
			rows[m[1]] = r
		}
	}
	return rows, intro
}

// sameDefault compares a README default with --help's, across their
// spellings: 60s and 1m0s, 64KB and 64KiB, "x" and x, off/0/blank and none.
func sameDefault(readme, help string) bool {
	norm := func(s string) string {
		s = strings.Trim(s, `"`)
		switch s {
		case "", "off", "0", "0s":
			return ""
		}
		if d, err := time.ParseDuration(s); err == nil {
			return d.String()
		}
		if strings.HasSuffix(s, "B") {
			if n, err := units.RAMInBytes(s); err == nil {
				return units.BytesSize(float64(n))
			}
		}
		return s
	}
	return norm(readme) == norm(help)
}

// TestREADMEOptions: README's options table lists exactly the flags
// --help prints, with their short forms and defaults, and says which have
// no TINYSSE_* variable (--help shows the variable of every other one).
func TestREADMEOptions(t *testing.T) {
	help := helpFlags(t)
	rows, intro := readmeOptions(t)
	if !strings.Contains(intro, "Every option has an environment variable `TINYSSE_<NAME>`") {
		t.Errorf("README's Options no longer says every option has its TINYSSE_<NAME> variable:\n%s", intro)
	}
	for name, h := range help {
		r, ok := rows[name]
		if !ok {
			t.Errorf("README's options table lacks --%s", name)
			continue
		}
		if r.short != h.short {
			t.Errorf("--%s: README's short form %q, --help's %q", name, r.short, h.short)
		}
		if !sameDefault(r.def, h.def) {
			t.Errorf("--%s: README's default %q, --help's %q", name, r.def, h.def)
		}
		saysNoVar := strings.Contains(r.meaning, "no variable")
		if actions := noEnv[name] && name != "help" && name != "version"; actions != saysNoVar {
			t.Errorf("--%s: README says \"no variable\" %v, want %v", name, saysNoVar, actions)
		}
	}
	for name := range rows {
		if _, ok := help[name]; !ok {
			t.Errorf("README's options table lists --%s, which --help does not print", name)
		}
	}
}
