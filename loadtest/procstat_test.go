package main

import (
	"os"
	"testing"
)

func TestParseStatCPU(t *testing.T) {
	// comm may hold spaces and ')': fields count from the last ')'.
	stat := "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 123 456 789\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 3.0 {
		t.Fatalf("parseStatCPU = %v, %v; want 3 (300 ticks)", got, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("short stat accepted")
	}
}

func TestParseStatusRSS(t *testing.T) {
	got, err := parseStatusRSS([]byte("Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t    2048 kB\nThreads:\t1\n"))
	if err != nil || got != 2048<<10 {
		t.Fatalf("parseStatusRSS = %v, %v", got, err)
	}
	if _, err := parseStatusRSS([]byte("Name:\tkthreadd\n")); err == nil {
		t.Error("status without VmRSS accepted")
	}
}

func TestReadProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS <= 0 || s.CPU < 0 {
		t.Errorf("readProc(self) = %+v", s)
	}
}

func TestParseIOField(t *testing.T) {
	io := []byte("rchar: 6976\nwchar: 0\nsyscr: 10\nsyscw: 12345\nread_bytes: 0\n")
	if got := parseIOField(io, "syscw:"); got != 12345 {
		t.Errorf("syscw = %d", got)
	}
	if got := parseIOField(io, "nope:"); got != -1 {
		t.Errorf("absent field = %d, want -1", got)
	}
}
