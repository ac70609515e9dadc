package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// durationType is the type of every duration key.
var durationType = reflect.TypeFor[time.Duration]()

// keyTypes maps every configuration key path ("binding.ttl") to the Go
// type of its field, read from the mapstructure tags of Config. It is the
// one list of known keys: a key not in it is refused (vnum.example.yaml).
func keyTypes() map[string]reflect.Type {
	out := map[string]reflect.Type{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		eachKey(t, prefix, func(_ int, f reflect.StructField, _, key string) {
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, key)
				return
			}
			out[key] = f.Type
		})
	}
	walk(reflect.TypeFor[Config](), "")
	return out
}

// eachKey calls fn for every field of the struct type t that is a
// configuration key or section (a mapstructure tag other than "-"), with
// the field's index, its tag and its key path under prefix. The list of
// keys and Masked both read Config through it, so they agree on what a key
// is.
func eachKey(t reflect.Type, prefix string, fn func(i int, f reflect.StructField, tag, key string)) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		fn(i, f, tag, key)
	}
}

// Keys returns every configuration key path, sorted.
func Keys() []string {
	ks := make([]string, 0, len(keyTypes()))
	for k := range keyTypes() {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// EnvName returns the environment variable that sets key:
// VNUM_ + the key path upper-cased with "_" for ".".
func EnvName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// checkFile reads the YAML file on its own and refuses what viper would let
// pass or misread: a key that is not known (nested ones included, also an
// empty section such as `sipp: {}`), a section given a value, and a value
// of the wrong kind for its key (above all a duration without a unit).
func checkFile(file string) error {
	body, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var root map[string]any
	if err := yaml.Unmarshal(body, &root); err != nil {
		return err
	}
	types := keyTypes()
	sections := map[string]bool{}
	for k := range types {
		if head, _, ok := strings.Cut(k, "."); ok {
			sections[head] = true
		}
	}
	var errs []error
	var walk func(m map[string]any, prefix string)
	walk = func(m map[string]any, prefix string) {
		names := make([]string, 0, len(m))
		for name := range m {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			key := name
			if prefix != "" {
				key = prefix + "." + name
			}
			val := m[name]
			switch {
			case prefix == "" && sections[key]:
				sub, ok := val.(map[string]any)
				if !ok && val != nil {
					errs = append(errs, &KeyError{Key: key, Reason: fmt.Sprintf("is a section, got %s", show(val))})
					continue
				}
				walk(sub, key)
			case types[key] != nil:
				if err := checkValue(key, types[key], val); err != nil {
					errs = append(errs, err)
				}
			default:
				errs = append(errs, unknownKey(key, types))
			}
		}
	}
	walk(root, "")
	return errors.Join(errs...)
}

// checkValue checks that a raw value from YAML or the environment suits a
// key of type t, and names the key, the value and what is wanted when not.
func checkValue(key string, t reflect.Type, val any) error {
	bad := func(want string) error {
		return &KeyError{Key: key, Reason: fmt.Sprintf("got %s, want %s", show(val), want)}
	}
	switch {
	case t == durationType:
		s, ok := val.(string)
		if !ok {
			return bad("a duration with a unit, e.g. " + example(key))
		}
		if _, err := time.ParseDuration(strings.TrimSpace(s)); err != nil || !hasUnit(s) {
			return bad("a duration with a unit, e.g. " + example(key))
		}
	case t.Kind() == reflect.Int:
		switch v := val.(type) {
		case int:
		case string:
			if _, err := strconv.Atoi(strings.TrimSpace(v)); err != nil {
				return bad("a whole number")
			}
		default:
			return bad("a whole number")
		}
	case t.Kind() == reflect.Bool:
		switch v := val.(type) {
		case bool:
		case string:
			if _, err := strconv.ParseBool(strings.TrimSpace(v)); err != nil {
				return bad("true or false")
			}
		default:
			return bad("true or false")
		}
	case t == durationsType:
		return checkDurations(key, val)
	case t.Kind() == reflect.Slice:
		switch v := val.(type) {
		case nil, string:
		case []any:
			for _, x := range v {
				if !isScalar(x) {
					return bad("a list of strings")
				}
			}
		default:
			return bad("a list of strings")
		}
	case t.Kind() == reflect.String:
		if val != nil && !isScalar(val) {
			return bad("a string")
		}
	}
	return nil
}

// hasUnit reports whether a duration string ends in a unit: "0" parses as a
// duration but is as ambiguous as "720".
func hasUnit(s string) bool {
	s = strings.TrimSpace(s)
	return s != "" && (s[len(s)-1] < '0' || s[len(s)-1] > '9')
}

// example returns the key's default as a hint of the wanted form.
func example(key string) string {
	if d, ok := defaults()[key].(time.Duration); ok {
		return FormatDuration(d)
	}
	return "90s"
}

func isScalar(v any) bool {
	switch v.(type) {
	case string, int, int64, float64, bool:
		return true
	}
	return false
}

// show prints a raw value the way the operator wrote it.
func show(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case map[string]any:
		return "a section"
	case []any:
		return "a list"
	case nil:
		return "nothing"
	}
	return fmt.Sprint(v)
}

// unknownKey names a key that is not known and the keys that are, in its
// section or at the top.
func unknownKey(key string, types map[string]reflect.Type) error {
	prefix := ""
	if i := strings.LastIndex(key, "."); i >= 0 {
		prefix = key[:i+1]
	}
	var known []string
	for k := range types {
		if rest, ok := strings.CutPrefix(k, prefix); ok {
			head, _, _ := strings.Cut(rest, ".")
			if !slices.Contains(known, head) {
				known = append(known, head)
			}
		}
	}
	slices.Sort(known)
	where := "known keys"
	if prefix != "" {
		where = "known keys in " + strings.TrimSuffix(prefix, ".")
	}
	return &KeyError{Key: key, Reason: fmt.Sprintf("unknown key (%s: %s)", where, strings.Join(known, ", "))}
}

// FormatDuration prints d the way vnum.example.yaml writes durations: whole hours as
// "720h", whole minutes as "15m", under two minutes in seconds ("60s",
// "90s"), and mixed values without their zero parts ("1h30m").
func FormatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d < 2*time.Minute && d > -2*time.Minute && d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
