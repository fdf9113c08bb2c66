package forms

import "sync"

// Types declared as locks, in another file of the package.
type guard sync.Mutex

type rwGuard sync.RWMutex

type Locker guard // a lock type of a lock type

type alias = sync.Mutex
