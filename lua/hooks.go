package lua

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tinysse/tinysse/engine"
	glua "github.com/yuin/gopher-lua"
)

// pubState is what the runtime keeps with a published message
// (engine.Message.State): the publisher's request and the keys publish
// added to pub, so that message sees them.
type pubState struct {
	req    *engine.Request
	origin *vm                    // the VM that ran publish; nil if none did
	extra  map[string]glua.LValue // owned by origin: read only under origin.mu
	// goExtra is extra copied out at publish (with several VMs), so that
	// other VMs never need origin's lock: no goroutine holds two VMs.
	goExtra map[string]any
}

// subState is what the runtime keeps with a subscriber
// (engine.Subscriber.State): its sub table, kept in its shard's VM.
type subState struct {
	v   *vm
	tbl *glua.LTable // read and written only under v.mu
	req *engine.Request
	// lazyReq: tbl's metatable (ours) builds sub.req afresh on each read,
	// so a hook's change to req is never kept. False when the script gave
	// sub a metatable of its own; req is then re-set before each hook
	// other than message.
	lazyReq bool
}

// dropReq removes a req a hook stored on sub, so reads go back to the
// fresh one. v.mu must be held.
func (st *subState) dropReq() {
	if st.lazyReq && st.tbl.RawGetString("req") != glua.LNil {
		st.tbl.RawSetString("req", glua.LNil)
	}
}

// newSubState keeps tbl as sub's table and serves its req lazily.
func newSubState(L *glua.LState, v *vm, tbl *glua.LTable, req *engine.Request) *subState {
	st := &subState{v: v, tbl: tbl, req: req}
	if L.GetMetatable(tbl) != glua.LNil {
		return st
	}
	st.lazyReq = true
	tbl.RawSetString("req", glua.LNil)
	mt := L.CreateTable(0, 1)
	mt.RawSetString("__index", L.NewFunction(func(L *glua.LState) int {
		if L.Get(2) == glua.LString("req") {
			L.Push(reqTable(L, st.req))
			return 1
		}
		return 0
	}))
	L.SetMetatable(tbl, mt)
	return st
}

// batch is a run of message calls on one VM, taken once by a shard.
type batch struct {
	v    *vm
	th   *thread
	pubs map[*engine.Message]*pubBase // pub tables built in this batch
	// watch is the metatable of every pub and msg table a call gets: its
	// __newindex stores the new key and sets added, so that a call which
	// adds a key is seen without walking the tables afterwards.
	watch *glua.LTable
	added bool
}

// pubBase is what one message's pub tables share within a batch.
type pubBase struct {
	pub   *glua.LTable // req, topics, extra keys: copied into each call's pub
	names []string     // pub's keys
	vals  []glua.LValue
	// spare and spareMsg are a pub and its msg that a call gave back
	// untouched (see intact), for the next call to reuse.
	spare, spareMsg *glua.LTable
}

// intact reports whether the call left pub and msg as it got them: no key
// added (b.added), pub's keys still holding base's values, msg still pub's
// msg (its field values were compared by the caller). Changes inside
// nested tables (req.headers) and rawset are not looked for: req is
// read-only for message, as documented.
func (base *pubBase) intact(b *batch, pub, msg *glua.LTable) bool {
	if b.added || pub.RawGetString("msg") != msg {
		return false
	}
	for i, name := range base.names {
		if pub.RawGetString(name) != base.vals[i] {
			return false
		}
	}
	return true
}

var errBadReturn = errors.New("hook must return a table or nothing")

// Hooks returns the engine hook points of the hooks the script defines.
// A hook the script does not define stays nil, so the engine skips it:
// without message, delivery never touches Lua.
func (rt *Runtime) Hooks() engine.Hooks {
	d := rt.defs
	var h engine.Hooks
	if d["publish"] || d["message"] {
		h.Publish = rt.publish
	}
	if d["subscribe"] || d["catchup"] || d["message"] || d["unsubscribe"] || d["timeout"] {
		h.Subscribe = rt.subscribe
	}
	if d["catchup"] {
		h.Catchup = rt.catchup
	}
	switch {
	case d["message"] && rt.cfg.Unbatched:
		h.Message = func(_ any, m *engine.Message, s *engine.Subscriber) []byte {
			b := rt.enterShard(s.Shard())
			defer rt.leaveShard(b)
			return rt.message(b, m, s)
		}
	case d["message"]:
		h.Message = rt.message
		h.EnterShard = rt.enterShard
		h.LeaveShard = rt.leaveShard
	}
	if d["timeout"] {
		h.Timeout = rt.timeout
	}
	if d["unsubscribe"] {
		h.Unsubscribe = rt.unsubscribe
	}
	return h
}

func (rt *Runtime) vmFor(shard int) *vm { return rt.vms[shard%len(rt.vms)] }

// lockAnyVM locks a free VM if there is one, else waits for the first
// that frees. Waiting on one chosen VM instead would leave a publish stuck
// behind a hook that runs to --script-timeout while other VMs sit idle.
func (rt *Runtime) lockAnyVM() *vm {
	if len(rt.vms) == 1 {
		v := rt.vms[0]
		v.mu.Lock()
		return v
	}
	if v := rt.tryAnyVM(); v != nil {
		return v
	}
	rt.freeMu.Lock()
	defer rt.freeMu.Unlock()
	rt.vmWaiters.Add(1)
	defer rt.vmWaiters.Add(-1)
	for {
		// Under freeMu, so an unlock between this try and Wait is not
		// missed: it broadcasts under freeMu once it sees the waiter.
		if v := rt.tryAnyVM(); v != nil {
			return v
		}
		rt.vmFree.Wait()
	}
}

// tryAnyVM locks the first free VM from the next in round robin, or
// returns nil.
func (rt *Runtime) tryAnyVM() *vm {
	n := uint32(len(rt.vms))
	start := rt.anyVM.Add(1)
	for i := uint32(0); i < n; i++ {
		if v := rt.vms[(start+i)%n]; v.mu.TryLock() {
			return v
		}
	}
	return nil
}

func (rt *Runtime) publish(r *engine.Request, m *engine.Message) (bool, error) {
	ps := &pubState{req: r}
	m.State = ps
	if !rt.defs["publish"] {
		return true, nil // message is defined: it needs the request
	}
	v := rt.lockAnyVM()
	defer v.unlock()
	th := v.thread()
	defer v.release(th)
	L := th.L
	pub := L.CreateTable(0, 3)
	pub.RawSetString("req", reqTable(L, r))
	pub.RawSetString("msg", msgTable(L, m))
	if len(m.Topics) > 0 {
		pub.RawSetString("topics", fromGo(L, m.Topics, 0))
	}
	tbl, err := rt.callForTable(v, th, "publish", v.hooks["publish"], pub)
	if tbl == nil {
		return false, err
	}
	if err := readMsg(L, L.GetField(tbl, "msg"), m); err != nil {
		return false, err
	}
	if m.Topics, err = stringList(L, L.GetField(tbl, "topics"), "pub.topics", nil); err != nil {
		return false, err
	}
	tbl.ForEach(func(k, val glua.LValue) {
		if s, ok := k.(glua.LString); ok && s != "req" && s != "msg" && s != "topics" {
			if ps.extra == nil {
				ps.extra = make(map[string]glua.LValue)
			}
			ps.extra[string(s)] = val
		}
	})
	ps.origin = v
	if len(rt.vms) > 1 && len(ps.extra) > 0 {
		ps.goExtra = make(map[string]any, len(ps.extra))
		for k, val := range ps.extra {
			g, err := toGo(val)
			if err != nil {
				return false, fmt.Errorf("publish: pub.%s cannot go to the other VMs: %w", k, err)
			}
			ps.goExtra[k] = g
		}
	}
	return true, nil
}

// callForTable calls the publish or subscribe hook (name, fn) with arg
// on th and reads what it returned: the table to go on with, or nil with
// a nil error when it refused (returned nothing or false), or nil and the
// error (logged when the call itself failed) when it returned anything
// else.
func (rt *Runtime) callForTable(v *vm, th *thread, name string, fn *glua.LFunction, arg *glua.LTable) (*glua.LTable, error) {
	ret, err := v.call(th, name, fn, arg)
	if err != nil {
		rt.cfg.Logger.Warn("lua hook failed", "hook", name, "err", err)
		return nil, err
	}
	if tbl, ok := ret.(*glua.LTable); ok {
		return tbl, nil
	}
	if ret == glua.LNil || ret == glua.LFalse {
		return nil, nil
	}
	return nil, fmt.Errorf("%s: %w, not %s", name, errBadReturn, ret.Type())
}

func (rt *Runtime) subscribe(sub *engine.Subscriber) (bool, error) {
	v := rt.vmFor(sub.Shard())
	v.mu.Lock()
	defer v.unlock()
	th := v.thread()
	defer v.release(th)
	L := th.L
	tbl := L.CreateTable(0, 2)
	tbl.RawSetString("req", reqTable(L, sub.Request))
	if len(sub.Topics) > 0 {
		tbl.RawSetString("topics", fromGo(L, sub.Topics, 0))
	}
	if fn := v.hooks["subscribe"]; fn != nil {
		t, err := rt.callForTable(v, th, "subscribe", fn, tbl)
		if t == nil {
			return false, err
		}
		tbl = t
	}
	topics, err := stringList(L, L.GetField(tbl, "topics"), "sub.topics", nil)
	if err != nil {
		return false, err
	}
	sub.Topics = topics
	sub.State = newSubState(L, v, tbl, sub.Request)
	return true, nil
}

// lockSub locks sub's VM and makes sure its sub table shows the request
// as it came (a hook's changes to req are not kept).
func (rt *Runtime) lockSub(sub *engine.Subscriber) (*subState, *thread) {
	st, _ := sub.State.(*subState)
	if st == nil {
		return nil, nil
	}
	st.v.mu.Lock()
	th := st.v.thread()
	if st.lazyReq {
		st.dropReq()
	} else {
		st.tbl.RawSetString("req", reqTable(th.L, st.req))
	}
	return st, th
}

func (st *subState) unlock(th *thread) {
	st.v.release(th)
	st.v.unlock()
}

func (rt *Runtime) catchup(sub *engine.Subscriber, lastID string, has bool) ([]*engine.Message, error) {
	st, th := rt.lockSub(sub)
	if st == nil {
		return nil, nil
	}
	defer st.unlock(th)
	var id glua.LValue = glua.LNil
	if has {
		id = glua.LString(lastID)
	}
	ret, err := st.v.call(th, "catchup", st.v.hooks["catchup"], st.tbl, id)
	if err != nil {
		rt.cfg.Logger.Warn("lua hook failed", "hook", "catchup", "err", err)
		return nil, err
	}
	list, ok := ret.(*glua.LTable)
	if !ok {
		return nil, nil
	}
	var msgs []*engine.Message
	for i := 1; i <= list.Len(); i++ {
		m := &engine.Message{}
		if err := readMsg(th.L, list.RawGetInt(i), m); err != nil {
			rt.cfg.Logger.Warn("lua hook returned a bad message", "hook", "catchup", "index", i, "err", err)
			continue
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

func (rt *Runtime) enterShard(shard int) any {
	v := rt.vmFor(shard)
	v.mu.Lock()
	var b *batch
	if n := len(v.spare); n > 0 {
		b = v.spare[n-1]
		v.spare = v.spare[:n-1]
	} else {
		b = &batch{v: v, pubs: make(map[*engine.Message]*pubBase)}
		b.watch = v.main.CreateTable(0, 1)
		b.watch.RawSetString("__newindex", v.main.NewFunction(func(L *glua.LState) int {
			L.CheckTable(1).RawSet(L.CheckAny(2), L.Get(3))
			b.added = true
			return 0
		}))
	}
	b.th = v.thread()
	return b
}

func (rt *Runtime) leaveShard(x any) {
	b := x.(*batch)
	v := b.v
	v.release(b.th)
	b.th = nil
	clear(b.pubs)
	v.spare = append(v.spare, b)
	v.unlock()
}

// message runs message(pub, sub) for one delivery inside a shard's batch.
// What is costly in pub (req, the keys publish added) is built once per
// message per batch; each call gets its own shallow pub, msg and comment
// tables, so what one subscriber's hook changes never reaches another's.
// A pub whose msg comes back unchanged reuses the frame encoded at publish.
func (rt *Runtime) message(x any, m *engine.Message, sub *engine.Subscriber) []byte {
	b, _ := x.(*batch)
	st, _ := sub.State.(*subState)
	if b == nil || st == nil || st.v != b.v {
		return m.Frame
	}
	v, L := b.v, b.th.L
	base := b.pubs[m]
	if base == nil {
		base = v.pubBase(L, m)
		b.pubs[m] = base
	}
	pub, msg := base.spare, base.spareMsg
	base.spare, base.spareMsg = nil, nil
	if pub == nil {
		pub = L.CreateTable(0, len(base.names)+1)
		for i, name := range base.names {
			pub.RawSetString(name, base.vals[i])
		}
		msg = msgTable(L, m)
		pub.RawSetString("msg", msg)
		L.SetMetatable(pub, b.watch)
		L.SetMetatable(msg, b.watch)
	}

	b.added = false
	ret, err := v.call(b.th, "message", v.message, pub, st.tbl)
	st.dropReq() // a req the hook stored on sub is not kept
	if err != nil {
		if b.th.timedOut.Load() {
			// Its context stays cancelled: the rest of the batch needs a new thread.
			v.release(b.th)
			b.th = v.thread()
		}
		rt.logMessageError("lua hook failed", err)
		return nil
	}
	tbl, ok := ret.(*glua.LTable)
	if !ok {
		return nil // nothing returned: this subscriber skips the message
	}
	var out engine.Message
	if err := readMsg(L, L.GetField(tbl, "msg"), &out); err != nil {
		rt.logMessageError("lua hook returned a bad message", err)
		return nil
	}
	if sameMessage(&out, m) {
		if tbl == pub && base.intact(b, pub, msg) {
			// Nothing the next call could see was changed: it may have
			// these tables instead of new ones.
			base.spare, base.spareMsg = pub, msg
		}
		return m.Frame
	}
	if err := out.Validate(); err != nil {
		rt.logMessageError("lua hook returned a bad message", err)
		return nil
	}
	return engine.AppendFrame(nil, &out)
}

// sameMessage reports whether a's wire fields equal b's.
func sameMessage(a, b *engine.Message) bool {
	return a.ID == b.ID && a.Event == b.Event && a.HasData == b.HasData && a.Data == b.Data &&
		slices.Equal(a.Comments, b.Comments)
}

// pubBase builds the parts of m's pub table that every call shares: req,
// topics and the keys publish added. v.mu must be held.
func (v *vm) pubBase(L *glua.LState, m *engine.Message) *pubBase {
	ps, _ := m.State.(*pubState)
	pub := L.CreateTable(0, 4)
	if len(m.Topics) > 0 {
		pub.RawSetString("topics", fromGo(L, m.Topics, 0))
	}
	if ps != nil {
		pub.RawSetString("req", reqTable(L, ps.req))
		switch {
		case ps.origin == v:
			for k, val := range ps.extra {
				pub.RawSetString(k, val)
			}
		default: // another VM, or another node (UnmarshalState)
			for k, val := range ps.goExtra {
				pub.RawSetString(k, fromGo(L, val, 0))
			}
		}
	} else {
		pub.RawSetString("req", L.CreateTable(0, 0))
	}
	base := &pubBase{pub: pub}
	pub.ForEach(func(k, val glua.LValue) {
		if name, ok := k.(glua.LString); ok {
			base.names = append(base.names, string(name))
			base.vals = append(base.vals, val)
		}
	})
	return base
}

func (rt *Runtime) timeout(sub *engine.Subscriber, elapsed time.Duration) (time.Duration, bool) {
	st, th := rt.lockSub(sub)
	if st == nil {
		return 0, false
	}
	defer st.unlock(th)
	ret, err := st.v.call(th, "timeout", st.v.hooks["timeout"], st.tbl, glua.LNumber(elapsed.Milliseconds()))
	if err != nil {
		rt.errs.timeout.Add(1)
		rt.cfg.Logger.Warn("lua hook failed", "hook", "timeout", "err", err)
		return 0, false
	}
	ms, ok := numberToMS(ret)
	return time.Duration(ms) * time.Millisecond, ok
}

func (rt *Runtime) unsubscribe(sub *engine.Subscriber) {
	st, th := rt.lockSub(sub)
	if st == nil {
		return
	}
	defer st.unlock(th)
	if _, err := st.v.call(th, "unsubscribe", st.v.hooks["unsubscribe"], st.tbl); err != nil {
		rt.errs.unsubscribe.Add(1)
		rt.cfg.Logger.Warn("lua hook failed", "hook", "unsubscribe", "err", err)
	}
}

// logMessageError logs at most one message-hook problem a second: the hook
// runs per delivery, and a broken script must not flood the log.
func (rt *Runtime) logMessageError(msg string, err error) {
	rt.errs.message.Add(1) // the error path already pays time.Now and a swap
	now := time.Now().Unix()
	if rt.errLog.Swap(now) != now {
		rt.cfg.Logger.Warn(msg, "hook", "message", "err", err)
	}
}
