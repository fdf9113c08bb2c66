package promtext

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Check reads text in the Prometheus text format and returns what breaks
// the rules a scraper and promtool hold it to: each family's # HELP (not
// empty) and # TYPE once, before its first series, of a known type; the
// series of a family together; a histogram's and a summary's series
// named after it (_bucket, _sum, _count, or with the family's name). It
// returns the families it met, in order.
func Check(text []byte) ([]string, error) {
	var errs []error
	help := map[string]bool{}
	typ := map[string]string{}
	done := map[string]bool{} // families whose series ended
	var order []string
	current := ""
	for n, line := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
		n++
		if line == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# "); ok {
			kind, rest, _ := strings.Cut(rest, " ")
			name, value, _ := strings.Cut(rest, " ")
			switch kind {
			case "HELP":
				if help[name] {
					errs = append(errs, fmt.Errorf("line %d: a second # HELP for %s", n, name))
				}
				if strings.TrimSpace(value) == "" {
					errs = append(errs, fmt.Errorf("line %d: # HELP %s is empty", n, name))
				}
				help[name] = true
			case "TYPE":
				if typ[name] != "" {
					errs = append(errs, fmt.Errorf("line %d: a second # TYPE for %s", n, name))
				}
				switch value {
				case Counter, Gauge, Histogram, Summary:
				default:
					errs = append(errs, fmt.Errorf("line %d: # TYPE %s %q is no type", n, name, value))
				}
				typ[name] = value
			}
			continue
		}
		name := line[:nameEnd([]byte(line))]
		fam := name
		for _, suffix := range [...]string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && (typ[base] == Histogram || typ[base] == Summary) {
				fam = base
			}
		}
		if fam != current {
			if done[fam] {
				errs = append(errs, fmt.Errorf("line %d: series of %s after another family's", n, fam))
			}
			if current != "" {
				done[current] = true
			}
			current = fam
			order = append(order, fam)
		}
		if !help[fam] || typ[fam] == "" {
			errs = append(errs, fmt.Errorf("line %d: %s has no # HELP or # TYPE before it", n, name))
		}
		if t := typ[fam]; t == Histogram && fam == name {
			errs = append(errs, fmt.Errorf("line %d: histogram %s written without _bucket, _sum or _count", n, name))
		}
		if t := typ[fam]; t == Counter && !strings.HasSuffix(fam, "_total") {
			errs = append(errs, fmt.Errorf("line %d: counter %s is not named *_total", n, fam))
		}
	}
	return order, errors.Join(errs...)
}

// Promtool runs `promtool check metrics` on text when promtool is on the
// PATH (Debian's package prometheus). found is false when it is not.
func Promtool(text []byte) (found bool, out string, err error) {
	path, err := exec.LookPath("promtool")
	if err != nil {
		return false, "", nil
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	b, err := cmd.CombinedOutput()
	return true, string(b), err
}
