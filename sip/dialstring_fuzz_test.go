package sip

import (
	"testing"
	"unicode/utf8"

	"github.com/vnum/vnum/internal/digits"
)

// FuzzParseDialled feeds the dialled-string parser what a Request-URI's
// user part and ext parameter can carry: any bytes, valid UTF-8 or not.
// The input that once crashed vnum ("\xd1;eXt=": an invalid byte before a mixed-case
// ;ext=) is kept under testdata/fuzz/FuzzParseDialled.
func FuzzParseDialled(f *testing.F) {
	for _, s := range [][2]string{
		{"17000000001", ""},
		{"+8617000000001;ext=1234", ""},
		{"17000000001;EXT=1234", ""},
		{"17000000001-1", ""},
		{"17000000001,,,9", ""},
		{"17000000001", "77"},
		{"", ""},
		{";ext=", ""},
		{"-,", ""},
		{"\xff\xfe;Ext=1", "\x80"},
		{"\u00e9;ext=12", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, user, uriExt string) {
		d, err := ParseDialled(user, uriExt)
		if err != nil {
			return
		}
		if len(d.Host) != 11 || !digits.Only(d.Host) {
			t.Fatalf("bad host %q from %q", d.Host, user)
		}
		if d.Extension != "" && !digits.Only(d.Extension) {
			t.Fatalf("bad extension %q from %q, %q", d.Extension, user, uriExt)
		}
		if !utf8.ValidString(d.Host + d.Extension) {
			t.Fatalf("invalid UTF-8 from %q", user)
		}
	})
}
