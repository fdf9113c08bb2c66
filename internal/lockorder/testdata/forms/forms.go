// Package forms declares a lock in every form the lock finder must see
// (internal/lockorder's TestLocksInFindsEveryForm). Not compiled.
package forms

import (
	"sync"
)

type plain struct {
	mu   sync.Mutex
	rw   sync.RWMutex
	ptr  *sync.Mutex
	a, b sync.Mutex
	n    int // not a lock
}

type embedded struct {
	sync.Mutex
}

type embeddedPtr struct {
	*sync.RWMutex
}

type containers struct {
	list  []sync.Mutex
	array [4]sync.RWMutex
	byKey map[string]*sync.Mutex
}

type nested struct {
	x struct {
		inner sync.Mutex
	}
}

type named struct {
	mu    guard
	guard *rwGuard
	Locker
}

type aliased struct {
	mu alias
}

func run() {
	var local sync.Mutex
	viaNew := new(sync.RWMutex)
	viaLit := sync.Mutex{}
	viaAddr := &sync.Mutex{}
	var typed guard
	notALock := sync.WaitGroup{}
	_, _, _, _, _, _ = local, viaNew, viaLit, viaAddr, typed, notALock
}
