package lua

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

func init() { builtins["url"] = openURL }

// url: encode(parts) (also url(parts)), decode(s), quote(tbl), unquote(s).
//
// parts are scheme, username, password, host, port, path, query (a raw
// query string, or a table as quote takes), fragment and args (name ->
// value or list of values). encode writes query first, then args, joined
// with "&"; a URL with a host and no path gets the path "/". decode gives
// the parts present in the URL (port a number, query the raw string, path
// decoded) and args, always a table: name -> list of values, in order.
// Since decode gives both query and args, encode(decode(s)) repeats the
// query: drop one of them first. quote writes names in sorted order;
// unquote gives a list for every name.
// A bad URL or escape is a Lua error.
func openURL(_ *vm, L *glua.LState) glua.LValue {
	encode := func(L *glua.LState) int {
		s, err := urlEncode(L, L.CheckTable(1))
		if err != nil {
			L.RaiseError("url.encode: %v", err)
		}
		L.Push(glua.LString(s))
		return 1
	}
	t := L.CreateTable(0, 4)
	t.RawSetString("encode", L.NewFunction(encode))
	t.RawSetString("decode", L.NewFunction(func(L *glua.LState) int {
		tbl, err := urlDecode(L, L.CheckString(1))
		if err != nil {
			L.RaiseError("url.decode: %v", err)
		}
		L.Push(tbl)
		return 1
	}))
	t.RawSetString("quote", L.NewFunction(func(L *glua.LState) int {
		q, err := quoteTable(L.CheckTable(1))
		if err != nil {
			L.RaiseError("url.quote: %v", err)
		}
		L.Push(glua.LString(q))
		return 1
	}))
	t.RawSetString("unquote", L.NewFunction(func(L *glua.LState) int {
		args, err := unquoteTable(L, strings.TrimPrefix(L.CheckString(1), "?"))
		if err != nil {
			L.RaiseError("url.unquote: %v", err)
		}
		L.Push(args)
		return 1
	}))
	return callable(L, t, encode)
}

func urlEncode(L *glua.LState, parts *glua.LTable) (string, error) {
	str := func(name string) (string, error) {
		v := L.GetField(parts, name)
		if v == glua.LNil {
			return "", nil
		}
		if s, ok := stringOrNumber(v); ok {
			return s, nil
		}
		return "", fmt.Errorf("%s must be a string, not %s", name, v.Type())
	}
	var u url.URL
	var err error
	field := func(name string, dst *string) {
		if err == nil {
			*dst, err = str(name)
		}
	}
	var user, pass, host, port, query string
	field("scheme", &u.Scheme)
	field("username", &user)
	field("password", &pass)
	field("host", &host)
	field("port", &port)
	field("path", &u.Path)
	field("fragment", &u.Fragment)
	if err != nil {
		return "", err
	}
	if L.GetField(parts, "password") != glua.LNil {
		u.User = url.UserPassword(user, pass)
	} else if user != "" {
		u.User = url.User(user)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > math.MaxUint16 {
			return "", fmt.Errorf("port %q is not a port number", port)
		}
		u.Host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		u.Host = "[" + host + "]" // an IPv6 address
	} else {
		u.Host = host
	}
	if u.Host != "" && u.Path == "" {
		u.Path = "/"
	}
	switch q := L.GetField(parts, "query").(type) {
	case *glua.LNilType:
	case glua.LString:
		query = string(q)
	case *glua.LTable:
		if query, err = quoteTable(q); err != nil {
			return "", fmt.Errorf("query: %w", err)
		}
	default:
		return "", fmt.Errorf("query must be a string or a table, not %s", q.Type())
	}
	switch a := L.GetField(parts, "args").(type) {
	case *glua.LNilType:
	case *glua.LTable:
		args, err := quoteTable(a)
		if err != nil {
			return "", fmt.Errorf("args: %w", err)
		}
		query = joinQuery(query, args)
	default:
		return "", fmt.Errorf("args must be a table, not %s", a.Type())
	}
	u.RawQuery = query
	return u.String(), nil
}

// joinQuery joins two raw query strings with "&".
func joinQuery(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "&" + b
}

func urlDecode(L *glua.LState, s string) (*glua.LTable, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	args, err := unquoteTable(L, u.RawQuery)
	if err != nil {
		return nil, err
	}
	t := L.CreateTable(0, 10)
	set := func(name, val string) {
		if val != "" {
			t.RawSetString(name, glua.LString(val))
		}
	}
	set("scheme", u.Scheme)
	if u.User != nil {
		t.RawSetString("username", glua.LString(u.User.Username()))
		if p, ok := u.User.Password(); ok {
			t.RawSetString("password", glua.LString(p))
		}
	}
	set("host", u.Hostname())
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("port %q is not a number", p)
		}
		t.RawSetString("port", glua.LNumber(n))
	}
	if u.Opaque != "" {
		set("path", u.Opaque)
	} else {
		set("path", u.Path)
	}
	set("query", u.RawQuery)
	set("fragment", u.Fragment)
	t.RawSetString("args", args)
	return t, nil
}

// quoteTable writes name -> value or list of values as a query string
// (application/x-www-form-urlencoded), names sorted.
func quoteTable(t *glua.LTable) (string, error) {
	vals := url.Values{}
	var err error
	t.ForEach(func(k, v glua.LValue) {
		if err != nil {
			return
		}
		name, ok := stringOrNumber(k)
		if !ok {
			err = fmt.Errorf("a %s name (names are strings)", k.Type())
			return
		}
		if list, ok := v.(*glua.LTable); ok {
			n := list.Len()
			for i := 1; i <= n && err == nil; i++ {
				var s string
				if s, err = queryValue(list.RawGetInt(i)); err == nil {
					vals.Add(name, s)
				} else {
					err = fmt.Errorf("%s[%d]: %w", name, i, err)
				}
			}
			return
		}
		var s string
		if s, err = queryValue(v); err == nil {
			vals.Add(name, s)
		} else {
			err = fmt.Errorf("%s: %w", name, err)
		}
	})
	if err != nil {
		return "", err
	}
	return vals.Encode(), nil
}

func queryValue(v glua.LValue) (string, error) {
	if s, ok := stringOrNumber(v); ok {
		return s, nil
	}
	if b, ok := v.(glua.LBool); ok {
		return strconv.FormatBool(bool(b)), nil
	}
	return "", fmt.Errorf("a %s value (values are strings, numbers, booleans or lists of them)", v.Type())
}

// unquoteTable parses a query string into name -> list of values. Unlike
// url.ParseQuery it treats ";" as an ordinary character and fails on a bad
// escape instead of dropping the pair.
func unquoteTable(L *glua.LState, q string) (*glua.LTable, error) {
	lists := make(map[string]*glua.LTable)
	var names []string
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if pair == "" {
			continue
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			return nil, err
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, err
		}
		list := lists[name]
		if list == nil {
			list = L.CreateTable(1, 0)
			lists[name] = list
			names = append(names, name)
		}
		list.Append(glua.LString(value))
	}
	sort.Strings(names)
	t := L.CreateTable(0, len(names))
	for _, name := range names {
		t.RawSetString(name, lists[name])
	}
	return t, nil
}
