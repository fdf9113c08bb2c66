package lua

import (
	"encoding/json"
	"fmt"

	"github.com/tinysse/tinysse/engine"
)

// wireState is what a message hook on another node needs of pub: the
// publisher's request and the keys the publish hook added.
type wireState struct {
	Req   *engine.Request `json:"req,omitempty"`
	Extra map[string]any  `json:"extra,omitempty"`
}

// MarshalState encodes what the runtime keeps with a published message
// (m.State: the publisher's request and the keys publish added to pub), so
// that a message hook on another node (cluster mode) sees the same pub.
// It returns nil when there is nothing to carry. A key whose value cannot
// be encoded (a NaN) is an error wrapping engine.ErrInvalid.
//
// It may be called from any goroutine after the publish hook returned: it
// takes the lock of the VM that ran publish, and holds no other.
func MarshalState(m *engine.Message) ([]byte, error) {
	ps, ok := m.State.(*pubState)
	if !ok || ps == nil {
		return nil, nil
	}
	w := wireState{Req: ps.req, Extra: ps.goExtra}
	if w.Extra == nil && len(ps.extra) > 0 && ps.origin != nil {
		ps.origin.mu.Lock()
		w.Extra = make(map[string]any, len(ps.extra))
		var err error
		for k, val := range ps.extra {
			if w.Extra[k], err = toGo(val); err != nil {
				break
			}
		}
		ps.origin.unlock()
		if err != nil {
			return nil, fmt.Errorf("%w: pub keys cannot go to other nodes: %v", engine.ErrInvalid, err)
		}
	}
	if w.Req == nil && len(w.Extra) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(&w)
	if err != nil {
		return nil, fmt.Errorf("%w: pub keys cannot go to other nodes: %v", engine.ErrInvalid, err)
	}
	return b, nil
}

// UnmarshalState sets m.State from MarshalState's bytes, for a message
// that came from another node: its message hook then sees pub.req and the
// keys publish added there.
func UnmarshalState(m *engine.Message, b []byte) error {
	var w wireState
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("lua: message state: %w", err)
	}
	if w.Req == nil {
		w.Req = &engine.Request{}
	}
	m.State = &pubState{req: w.Req, goExtra: w.Extra}
	return nil
}
