package engine

import "errors"

// ErrHookLimit is wrapped by the error of a hook stopped at one of the
// script's limits (its run time, its memory). Its text names the hook and
// the limit and nothing of the script, so the transport may show it to the
// client.
var ErrHookLimit = errors.New("hook stopped at a limit")
