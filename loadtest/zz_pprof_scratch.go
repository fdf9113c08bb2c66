//go:build pprofscratch

package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	a := os.Getenv("PPROF_ADDR")
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		a = os.Getenv("PPROF_WORKER_ADDR")
	}
	if a != "" {
		go http.ListenAndServe(a, nil)
	}
}
