package config

import (
	"reflect"
	"strings"
)

// runtimeSections are the sections whose keys a running `vnum serve` takes
// anew when it re-reads its configuration (SIGHUP): they apply to new calls
// at once. Every other key (listeners, media, the store, ...) needs a
// restart.
var runtimeSections = []string{"log.", "security.", "protection.", "trunk.", "events."}

// AtRunTime reports whether a running server takes key anew on a reload.
func AtRunTime(key string) bool {
	for _, s := range runtimeSections {
		if strings.HasPrefix(key, s) {
			return true
		}
	}
	return false
}

// Changed returns the keys whose values differ between c and other,
// sorted as Keys sorts them.
func (c *Config) Changed(other *Config) []string {
	var out []string
	for _, key := range Keys() {
		if !reflect.DeepEqual(field(c, key).Interface(), field(other, key).Interface()) {
			out = append(out, key)
		}
	}
	return out
}

// Keep sets the values of keys in c to those in from: a reload keeps what
// needs a restart as it runs.
func (c *Config) Keep(from *Config, keys []string) {
	for _, key := range keys {
		field(c, key).Set(field(from, key))
	}
}

// field is the value of key's field in c (a settable reflect.Value).
func field(c *Config, key string) reflect.Value {
	v := reflect.ValueOf(c).Elem()
	for _, part := range strings.Split(key, ".") {
		found := false
		eachKey(v.Type(), "", func(i int, _ reflect.StructField, tag, _ string) {
			if !found && tag == part {
				v, found = v.Field(i), true
			}
		})
		if !found {
			return reflect.Value{}
		}
	}
	return v
}
