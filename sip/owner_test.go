package sip

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOnlyTheCallChangesItsState enforces the rule of call.go: a call's
// fields are changed by its own goroutine only. In the package's code an
// assignment to a field of a call (c.x = …, c.a.x = …, c.x++) may stand only
//   - in a method of *call, *callerLeg or *calleeLeg, which run on the
//     call's goroutine, and not inside a function literal there (a
//     goroutine, a timer or a callback would run it elsewhere);
//   - in newCall and runCall, before the call is registered and seen by
//     any other goroutine.
//
// Handlers, fork callbacks and timers post events instead (call.post).
func TestOnlyTheCallChangesItsState(t *testing.T) {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	var bad []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		require.NoError(t, err)
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			owner := isOwnerFunc(fd)
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.FuncLit:
					for _, pos := range callFieldWrites(n.Body) {
						bad = append(bad, fset.Position(pos).String()+" (in a function literal of "+fd.Name.Name+")")
					}
					return false
				case *ast.AssignStmt, *ast.IncDecStmt, *ast.CallExpr:
					if !owner {
						for _, pos := range callFieldWrites(n) {
							bad = append(bad, fset.Position(pos).String()+" (in "+fd.Name.Name+")")
						}
					}
				}
				return true
			})
		}
	}
	require.Empty(t, bad, "call state written outside the call's goroutine")
}

// isOwnerFunc reports whether fd runs on the call's goroutine, or builds
// the call before anyone else can see it.
func isOwnerFunc(fd *ast.FuncDecl) bool {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return false
	}
	if star, ok := fd.Recv.List[0].Type.(*ast.StarExpr); ok {
		if id, ok := star.X.(*ast.Ident); ok {
			switch id.Name {
			case "call", "callerLeg", "calleeLeg":
				return true
			case "Server":
				return fd.Name.Name == "newCall" || fd.Name.Name == "runCall"
			}
		}
	}
	return false
}

// callFieldWrites finds assignments under n whose target is a field of a
// call: a selector rooted at c (the package's name for a *call), at a
// fork's call (f.call), or at a leg's receiver (a, b in leg methods).
func callFieldWrites(n ast.Node) []token.Pos {
	var out []token.Pos
	check := func(e ast.Expr) {
		if root, ok := selectorRoot(e); ok && (root == "c" || root == "f.call") {
			out = append(out, e.Pos())
		}
	}
	ast.Inspect(n, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			for _, l := range n.Lhs {
				check(l)
			}
		case *ast.IncDecStmt:
			check(n.X)
		case *ast.CallExpr:
			// An atomic's or a lock's write is a write too.
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && mutators[sel.Sel.Name] {
				check(sel.X)
			}
		}
		return true
	})
	return out
}

// mutators are the methods by which a field writes itself: atomics and
// locks (a lock taken outside the call's goroutine guards shared state,
// which a call does not have).
var mutators = map[string]bool{"Store": true, "Swap": true, "CompareAndSwap": true, "Add": true, "Lock": true}

// selectorRoot is the root of a selector chain x.y.z: "x", or "f.call"
// for f.call.y.
func selectorRoot(e ast.Expr) (string, bool) {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return "", false
	}
	for {
		switch x := sel.X.(type) {
		case *ast.Ident:
			return x.Name, true
		case *ast.SelectorExpr:
			if id, ok := x.X.(*ast.Ident); ok && x.Sel.Name == "call" {
				return id.Name + ".call", true
			}
			sel = x
		default:
			return "", false
		}
	}
}
