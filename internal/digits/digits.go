// Package digits answers the one question numbers, extensions and amounts
// all ask of their text: is it made of ASCII digits alone?
package digits

// Only reports whether s is not empty and every byte of it is an ASCII
// digit 0-9 (no sign, no space, no other script's digits).
func Only(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
