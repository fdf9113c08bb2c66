package lockorder

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestEveryLockIsListed finds every field or variable of type sync.Mutex
// or sync.RWMutex in the module's non-test Go files (see locksIn for the
// forms) and checks that locksordering.txt lists exactly those.
func TestEveryLockIsListed(t *testing.T) {
	root := moduleRoot(t)
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || name == "node_modules" || strings.HasPrefix(name, ".") || isModule(path)) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	found := locksIn(t, root, files)
	listed := listedLocks(t, filepath.Join(root, "locksordering.txt"))
	for name, pos := range found {
		if !listed[name] {
			t.Errorf("%s: lock %s is not in locksordering.txt (say what it guards and where it stands in the order)", pos, name)
		}
	}
	for name := range listed {
		if _, ok := found[name]; !ok {
			t.Errorf("locksordering.txt lists %s, which is no longer in the code", name)
		}
	}
	if len(found) < 10 {
		t.Fatalf("found only %d locks: the walk is broken", len(found))
	}
	for _, want := range []string{"transport.Server.mu", "lua.Runtime.watchMu", "engine.Engine.pubMu", "engine.shard.mu"} {
		if _, ok := found[want]; !ok {
			t.Errorf("the walk missed %s", want)
		}
	}
}

// TestLocksInFindsEveryForm: the finder sees a lock however it is
// declared (testdata/forms/forms.go holds one of each form).
func TestLocksInFindsEveryForm(t *testing.T) {
	dir := filepath.Join("testdata", "forms")
	found := locksIn(t, "testdata", []string{filepath.Join(dir, "forms.go"), filepath.Join(dir, "types.go")})
	want := []string{
		"forms.plain.mu", "forms.plain.rw", "forms.plain.ptr", "forms.plain.a", "forms.plain.b",
		"forms.embedded.Mutex", "forms.embeddedPtr.RWMutex",
		"forms.containers.list", "forms.containers.array", "forms.containers.byKey",
		"forms.nested.inner", // a field of an anonymous struct: owner is the outer type, the field the lock's
		"forms.named.mu", "forms.named.guard", "forms.named.Locker",
		"forms.aliased.mu",
		"forms.run.local", "forms.run.viaNew", "forms.run.viaLit", "forms.run.viaAddr", "forms.run.typed",
	}
	var got []string
	for name := range found {
		got = append(got, name)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("found %v\nwant  %v", got, want)
	}
}

func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for !isModule(dir) {
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	return dir
}

func isModule(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "go.mod"))
	return err == nil
}

type parsed struct {
	f    *ast.File
	dir  string // the package's directory, relative to the root
	sync string // the name sync is imported under; "" if it is not
	dot  bool   // sync is dot-imported
}

// locksIn returns the locks declared in files, named dir.Type.field or
// dir.function.variable (dir: the package's directory under root), with
// their positions. A lock is a sync.Mutex or sync.RWMutex, or a type
// declared as one (type guard sync.Mutex; alias or not), directly, behind
// a pointer, or as the element of a slice, array, map or channel; it is
// found as a named field, an embedded field (named Mutex or RWMutex, or
// the type's name), a variable with that type, or a variable set to
// sync.Mutex{}, &sync.Mutex{} or new(sync.Mutex) without a type.
func locksIn(t *testing.T, root string, files []string) map[string]string {
	fset := token.NewFileSet()
	var all []parsed
	lockTypes := map[string]bool{} // dir.Type of types declared as a lock
	for _, path := range files {
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		p := parsed{f: f, dir: filepath.ToSlash(rel)}
		for _, imp := range f.Imports {
			if imp.Path.Value == `"sync"` {
				p.sync = "sync"
				if imp.Name != nil {
					p.sync = imp.Name.Name
					p.dot = imp.Name.Name == "."
				}
			}
		}
		all = append(all, p)
	}
	// isSyncLock says whether e names sync.Mutex or sync.RWMutex in p.
	isSyncLock := func(p parsed, e ast.Expr) bool {
		if p.sync == "" {
			return false
		}
		if id, ok := e.(*ast.Ident); ok && p.dot {
			return id.Name == "Mutex" || id.Name == "RWMutex"
		}
		sel, ok := e.(*ast.SelectorExpr)
		if !ok {
			return false
		}
		pkg, ok := sel.X.(*ast.Ident)
		return ok && pkg.Name == p.sync && (sel.Sel.Name == "Mutex" || sel.Sel.Name == "RWMutex")
	}
	// Types declared as a lock, in any file of their package.
	for changed := true; changed; {
		changed = false
		for _, p := range all {
			ast.Inspect(p.f, func(n ast.Node) bool {
				ts, ok := n.(*ast.TypeSpec)
				if !ok {
					return true
				}
				key := p.dir + "." + ts.Name.Name
				id, isIdent := ts.Type.(*ast.Ident)
				if !lockTypes[key] && (isSyncLock(p, ts.Type) || isIdent && lockTypes[p.dir+"."+id.Name]) {
					lockTypes[key] = true
					changed = true
				}
				return true
			})
		}
	}
	out := map[string]string{}
	for _, p := range all {
		// base is the lock type e holds (through pointers and
		// containers), or nil; name is the name an embedded field of it
		// takes.
		var base func(e ast.Expr) (ok bool, name string)
		base = func(e ast.Expr) (bool, string) {
			switch x := e.(type) {
			case *ast.StarExpr:
				return base(x.X)
			case *ast.ArrayType:
				return base(x.Elt)
			case *ast.MapType:
				return base(x.Value)
			case *ast.ChanType:
				return base(x.Value)
			case *ast.ParenExpr:
				return base(x.X)
			case *ast.SelectorExpr:
				return isSyncLock(p, x), x.Sel.Name
			case *ast.Ident:
				return isSyncLock(p, x) || lockTypes[p.dir+"."+x.Name], x.Name
			}
			return false, ""
		}
		// isLockValue says whether e makes a lock: T{}, &T{}, new(T).
		isLockValue := func(e ast.Expr) bool {
			if u, ok := e.(*ast.UnaryExpr); ok && u.Op == token.AND {
				e = u.X
			}
			switch x := e.(type) {
			case *ast.CompositeLit:
				ok, _ := base(x.Type)
				return ok && x.Type != nil
			case *ast.CallExpr:
				if id, ok := x.Fun.(*ast.Ident); ok && id.Name == "new" && len(x.Args) == 1 {
					ok, _ := base(x.Args[0])
					return ok
				}
			}
			return false
		}
		add := func(owner, name string, pos token.Pos) {
			out[p.dir+"."+owner+"."+name] = fset.Position(pos).String()
		}
		// owner names the innermost declaration: a named type, else a
		// function. A type declared as a lock is not itself a variable.
		var walk func(n ast.Node, owner string)
		walk = func(n ast.Node, owner string) {
			ast.Inspect(n, func(c ast.Node) bool {
				switch c := c.(type) {
				case *ast.FuncDecl:
					if c != n {
						walk(c, c.Name.Name)
						return false
					}
				case *ast.TypeSpec:
					if c != n {
						walk(c, c.Name.Name)
						return false
					}
				case *ast.Field:
					if ok, name := base(c.Type); ok {
						if len(c.Names) == 0 {
							add(owner, name, c.Pos())
						}
						for _, id := range c.Names {
							add(owner, id.Name, c.Pos())
						}
					}
				case *ast.ValueSpec:
					for i, id := range c.Names {
						typed := false
						if c.Type != nil {
							typed, _ = base(c.Type)
						}
						if typed || c.Type == nil && i < len(c.Values) && isLockValue(c.Values[i]) {
							add(owner, id.Name, id.Pos())
						}
					}
				case *ast.AssignStmt:
					if c.Tok == token.DEFINE {
						for i, l := range c.Lhs {
							if id, ok := l.(*ast.Ident); ok && i < len(c.Rhs) && isLockValue(c.Rhs[i]) {
								add(owner, id.Name, id.Pos())
							}
						}
					}
				}
				return true
			})
		}
		walk(p.f, "")
	}
	for name, pos := range out {
		if strings.Contains(name, "..") {
			t.Errorf("%s: %s is a package-level lock; give it an owner type", pos, name)
		}
	}
	return out
}

var listedRE = regexp.MustCompile(`^\s+([a-z0-9_/]+\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+)\s`)

func listedLocks(t *testing.T, path string) map[string]bool {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]bool{}
	var order []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := listedRE.FindStringSubmatch(sc.Text() + " "); m != nil {
			if out[m[1]] {
				t.Errorf("locksordering.txt lists %s twice", m[1])
			}
			out[m[1]] = true
			order = append(order, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(order, "engine.shard.mu") {
		t.Fatalf("locksordering.txt: no entries parsed")
	}
	return out
}
