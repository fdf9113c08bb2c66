package lua_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
)

// probe opens a non-counted subscriber of count.lua and returns what its
// catchup reports: the VM, that VM's global count and the shared count.
func probe(t *testing.T, ts *testServer) (vm, global, shared int) {
	t.Helper()
	s := ts.mustSubscribe(t, "/sse?probe")
	defer s.close()
	f := strings.Fields(s.nextData(t))
	if len(f) != 3 {
		t.Fatalf("probe got %q", f)
	}
	n := make([]int, 3)
	for i := range f {
		v, err := strconv.Atoi(f[i])
		if err != nil {
			t.Fatalf("probe got %q", f)
		}
		n[i] = v
	}
	return n[0], n[1], n[2]
}

func TestLuaVMs(t *testing.T) {
	ts := startServer(t, readFile(t, "count.lua"), lua.Config{VMs: 4, Tick: 20 * time.Millisecond}, engine.Config{Shards: 4})

	t.Run("startup on every VM", func(t *testing.T) {
		var got []string
		for _, l := range ts.out.Lines() {
			if strings.HasPrefix(l, "startup") {
				got = append(got, l)
			}
		}
		want := []string{"startup\t0\t4", "startup\t1\t4", "startup\t2\t4", "startup\t3\t4"}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("startup printed %q, want %q", got, want)
		}
	})

	t.Run("tick on VM 0", func(t *testing.T) {
		eventually(t, "three ticks", func() bool { return countLines(ts.out, "tick\t0") == 3 })
		for _, l := range ts.out.Lines() {
			if strings.HasPrefix(l, "tick") && l != "tick\t0" {
				t.Errorf("tick ran elsewhere: %q", l)
			}
		}
	})

	t.Run("shared count", func(t *testing.T) {
		var streams []*stream
		for i := range 40 {
			streams = append(streams, ts.mustSubscribe(t, "/sse?s"+strconv.Itoa(i)))
		}
		if _, _, n := probe(t, ts); n != 40 {
			t.Fatalf("shared count %d after 40 subscribed", n)
		}
		for _, s := range streams[:15] {
			s.close()
		}
		eventually(t, "shared count 25", func() bool {
			_, _, n := probe(t, ts)
			return n == 25
		})
		time.Sleep(100 * time.Millisecond)
		if _, _, n := probe(t, ts); n != 25 {
			t.Errorf("shared count %d, want 25 after 40 came and 15 left", n)
		}

		// Globals are per VM: four consecutive probes land on four
		// shards, hence four VMs; each saw only its share of the 40.
		vms := map[int]int{}
		for range 4 {
			vm, global, _ := probe(t, ts)
			vms[vm] = global
		}
		sum := 0
		for vm, global := range vms {
			if global >= 40 {
				t.Errorf("VM %d's global count is %d: globals are shared", vm, global)
			}
			sum += global
		}
		if len(vms) != 4 || sum != 40 {
			t.Errorf("per-VM global counts %v, want four VMs summing to 40", vms)
		}
	})
}
