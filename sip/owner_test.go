package sip

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/build"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// callStateTypes are the types a call's state is made of: the call, its
// legs and what only they hold. Their values are read and changed on the
// call's goroutine alone (call.go).
var callStateTypes = map[string]bool{
	"call": true, "callerLeg": true, "calleeLeg": true, "legMedia": true, "mediaWatch": true, "sdpSession": true,
}

// TestOnlyTheCallChangesItsState enforces the rule of call.go, reading the
// package's code with its types: a call's state (a value of one of
// callStateTypes, or anything inside one) is changed by the call's own
// goroutine only. A write to it (an assignment, ++ or --, delete, an
// atomic's or a lock's method) may stand only
//   - in a method of a call state type, which runs on the call's
//     goroutine, and not inside a function literal there (a goroutine, a
//     timer or a callback would run it elsewhere);
//   - in newCall, which builds the call before any other goroutine can
//     see it.
//
// Nor may any other function, or a function literal anywhere, call a
// method of a call state type that writes that state, directly or
// through the methods it calls; Server.startCall alone calls serve, which
// makes the INVITE's goroutine the call's owner. And no other type holds
// call state: every other goroutine holds a callHandle, which has none,
// and tells the call what happened by posting an event.
func TestOnlyTheCallChangesItsState(t *testing.T) {
	t.Parallel()
	fset, files, info := typeCheckPackage(t)
	pkgType := func(tp types.Type) (string, bool) {
		if p, ok := tp.(*types.Pointer); ok {
			tp = p.Elem()
		}
		n, ok := tp.(*types.Named)
		if !ok || n.Obj().Pkg() == nil || n.Obj().Pkg().Name() != "sip" {
			return "", false
		}
		return n.Obj().Name(), true
	}
	isState := func(tp types.Type) bool {
		name, ok := pkgType(tp)
		return ok && callStateTypes[name]
	}
	// writesState reports whether writing e writes call state.
	var writesState func(e ast.Expr) bool
	writesState = func(e ast.Expr) bool {
		switch x := e.(type) {
		case *ast.ParenExpr:
			return writesState(x.X)
		case *ast.StarExpr:
			return isState(info.TypeOf(x.X)) || writesState(x.X)
		case *ast.IndexExpr:
			return writesState(x.X)
		case *ast.SelectorExpr:
			sel, ok := info.Selections[x]
			if !ok || sel.Kind() != types.FieldVal {
				return false
			}
			return isState(info.TypeOf(x.X)) || writesState(x.X)
		}
		return false
	}
	// mutators are the methods by which a field writes itself: atomics
	// and locks (a lock taken off the call's goroutine would guard shared
	// state, which a call does not have).
	mutators := map[string]bool{"Store": true, "Swap": true, "CompareAndSwap": true, "Add": true, "Lock": true}
	// directWrites are the writes of call state right in n, function
	// literals aside.
	directWrites := func(n ast.Node, inLits bool) []token.Pos {
		var out []token.Pos
		ast.Inspect(n, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncLit:
				return inLits
			case *ast.AssignStmt:
				if n.Tok == token.DEFINE {
					return true
				}
				for _, l := range n.Lhs {
					if writesState(l) {
						out = append(out, l.Pos())
					}
				}
			case *ast.IncDecStmt:
				if writesState(n.X) {
					out = append(out, n.X.Pos())
				}
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "delete" && len(n.Args) > 0 && writesState(n.Args[0]) {
					out = append(out, n.Pos())
				}
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && mutators[sel.Sel.Name] && writesState(sel.X) {
					out = append(out, n.Pos())
				}
			}
			return true
		})
		return out
	}
	// stateMethod is the method of a call state type a call expression
	// calls, if any.
	stateMethod := func(c *ast.CallExpr) (*types.Func, bool) {
		sel, ok := c.Fun.(*ast.SelectorExpr)
		if !ok {
			return nil, false
		}
		s, ok := info.Selections[sel]
		if !ok || s.Kind() != types.MethodVal || !isState(s.Recv()) {
			return nil, false
		}
		f, ok := s.Obj().(*types.Func)
		return f, ok
	}

	// The methods of call state types, what each writes itself and which
	// of their kind each calls.
	type method struct {
		decl   *ast.FuncDecl
		writes bool
		calls  []*types.Func
	}
	methods := map[*types.Func]*method{}
	isOwner := func(fd *ast.FuncDecl) bool {
		if fd.Recv == nil || len(fd.Recv.List) == 0 {
			return fd.Name.Name == "newCall"
		}
		return isState(info.TypeOf(fd.Recv.List[0].Type))
	}
	var decls []*ast.FuncDecl
	for _, f := range files {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			decls = append(decls, fd)
			if fd.Recv == nil || !isOwner(fd) {
				continue
			}
			m := &method{decl: fd, writes: len(directWrites(fd.Body, false)) > 0}
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				if c, ok := n.(*ast.CallExpr); ok {
					if f, ok := stateMethod(c); ok {
						m.calls = append(m.calls, f)
					}
				}
				return true
			})
			obj, ok := info.Defs[fd.Name].(*types.Func)
			require.True(t, ok, fd.Name.Name)
			methods[obj] = m
		}
	}
	for changed := true; changed; {
		changed = false
		for _, m := range methods {
			for _, f := range m.calls {
				if callee, ok := methods[f]; ok && callee.writes && !m.writes {
					m.writes, changed = true, true
				}
			}
		}
	}
	writer := func(f *types.Func) bool {
		m, ok := methods[f]
		return ok && m.writes
	}

	var bad []string
	where := func(pos token.Pos, what string) {
		bad = append(bad, fset.Position(pos).String()+" ("+what+")")
	}
	for _, fd := range decls {
		owner := isOwner(fd)
		if !owner {
			for _, pos := range directWrites(fd.Body, false) {
				where(pos, "written in "+fd.Name.Name)
			}
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncLit:
				for _, pos := range directWrites(n.Body, true) {
					where(pos, "written in a function literal of "+fd.Name.Name)
				}
				ast.Inspect(n.Body, func(n ast.Node) bool {
					if c, ok := n.(*ast.CallExpr); ok {
						if f, ok := stateMethod(c); ok && writer(f) {
							where(c.Pos(), f.Name()+", which writes call state, called in a function literal of "+fd.Name.Name)
						}
					}
					return true
				})
				return false
			case *ast.CallExpr:
				if f, ok := stateMethod(n); ok && !owner && writer(f) && !(fd.Name.Name == "startCall" && f.Name() == "serve") {
					where(n.Pos(), f.Name()+", which writes call state, called in "+fd.Name.Name)
				}
			}
			return true
		})
	}
	// No other type holds call state.
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				st, ok := ts.Type.(*ast.StructType)
				if !ok || callStateTypes[ts.Name.Name] {
					continue
				}
				for _, field := range st.Fields.List {
					if holdsState(info.TypeOf(field.Type), isState) {
						where(field.Pos(), ts.Name.Name+" holds call state")
					}
				}
			}
		}
	}
	require.Empty(t, bad, "call state written outside the call's goroutine")
	// The test sees the call's methods, and what writes call state.
	var serve *method
	for f, m := range methods {
		if f.Name() == "serve" {
			serve = m
		}
	}
	require.NotNil(t, serve, "call.serve is not among the call's methods")
	require.True(t, serve.writes, "call.serve writes the call's state")
}

// holdsState reports whether a value of type tp holds (points to, or
// contains) a value of a call state type.
func holdsState(tp types.Type, isState func(types.Type) bool) bool {
	switch t := tp.(type) {
	case *types.Pointer:
		return holdsState(t.Elem(), isState)
	case *types.Slice:
		return holdsState(t.Elem(), isState)
	case *types.Array:
		return holdsState(t.Elem(), isState)
	case *types.Map:
		return holdsState(t.Key(), isState) || holdsState(t.Elem(), isState)
	case *types.Chan:
		return holdsState(t.Elem(), isState)
	}
	return isState(tp)
}

// typeCheckPackage parses the package's code (its tests aside, for this
// platform) and checks its types against its imports as the go command
// last compiled them.
func typeCheckPackage(t *testing.T) (*token.FileSet, []*ast.File, *types.Info) {
	t.Helper()
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goCmd); err != nil {
		goCmd = "go"
	}
	cmd := exec.Command(goCmd, "list", "-export", "-deps", "-f", "{{.ImportPath}} {{.Export}}", ".")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list -export")
	exports := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if path, file, ok := strings.Cut(sc.Text(), " "); ok {
			exports[path] = file
		}
	}
	pkg, err := build.ImportDir(".", 0)
	require.NoError(t, err)
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range pkg.GoFiles {
		f, err := parser.ParseFile(fset, name, nil, 0)
		require.NoError(t, err)
		files = append(files, f)
	}
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) { return os.Open(exports[path]) })
	info := &types.Info{
		Types:      map[ast.Expr]types.TypeAndValue{},
		Defs:       map[*ast.Ident]types.Object{},
		Uses:       map[*ast.Ident]types.Object{},
		Selections: map[*ast.SelectorExpr]*types.Selection{},
	}
	_, err = (&types.Config{Importer: imp}).Check(pkg.ImportPath, fset, files, info)
	require.NoError(t, err)
	return fset, files, info
}
