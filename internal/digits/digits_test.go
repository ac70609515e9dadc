package digits

import "testing"

func TestOnly(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"": false, "0": true, "17000000001": true, "1234": true,
		"+86": false, "12 34": false, "12a": false, "-1": false, "١٢": false, "12\x00": false,
	} {
		if got := Only(s); got != want {
			t.Errorf("Only(%q) = %v, want %v", s, got, want)
		}
	}
}
