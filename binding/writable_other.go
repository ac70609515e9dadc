//go:build !unix

package binding

// checkWritable leaves every file to SQLite's own errors where process
// credentials are not those of Unix.
func checkWritable(string) error { return nil }
