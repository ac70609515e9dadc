package config

import (
	"reflect"
	"regexp"
	"time"
)

// Mask replaces a secret that is set in the output of Masked.
const Mask = "***"

// secretKeys are the keys whose values Masked hides.
var secretKeys = map[string]bool{
	"trunk.password": true,
	"admin.token":    true,
}

// Masked returns the configuration as nested maps keyed like the YAML file,
// durations as vnum.example.yaml writes them ("15m", "720h"), with secrets that are
// set replaced by Mask, passwords inside DSNs and URLs included
// (store.dsn's postgres://user:pass@host/db). It is what `vnum config show`
// prints.
func (c *Config) Masked() map[string]any {
	return toMap(reflect.ValueOf(*c), "")
}

func toMap(v reflect.Value, prefix string) map[string]any {
	out := map[string]any{}
	eachKey(v.Type(), prefix, func(i int, f reflect.StructField, tag, key string) {
		fv := v.Field(i)
		switch {
		case f.Type.Kind() == reflect.Struct:
			out[tag] = toMap(fv, key)
		case f.Type == durationType:
			out[tag] = FormatDuration(time.Duration(fv.Int()))
		case f.Type == durationsType:
			xs := make([]string, fv.Len())
			for j := range xs {
				xs[j] = FormatDuration(time.Duration(fv.Index(j).Int()))
			}
			out[tag] = xs
		case secretKeys[key] && fv.String() != "":
			out[tag] = Mask
		case f.Type.Kind() == reflect.Slice:
			xs := make([]string, fv.Len())
			for j := range xs {
				xs[j] = MaskURL(fv.Index(j).String())
			}
			out[tag] = xs
		case f.Type.Kind() == reflect.String:
			out[tag] = MaskURL(fv.String())
		default:
			out[tag] = fv.Interface()
		}
	})
	return out
}

// urlPassword matches the password of a URL's user info: the
// "scheme://user:password@" of postgres:// DSNs and the "sip:user:password@"
// form RFC 3261 §19.1.1 allows (and discourages) in SIP URIs.
var urlPassword = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*:(?://)?[^:@/?#\s]*:)[^@/?#\s]*@`)

// keywordPassword matches password=... in a key=value DSN (libpq's
// "host=db user=vnum password=secret") and in a URL's query
// (?password=secret).
var keywordPassword = regexp.MustCompile(`(?i)((?:^|[\s?&;])(?:password|pass|pwd)=)('[^']*'|[^\s&;]*)`)

// MaskURL returns s with any password inside it replaced by Mask; a value
// without one comes back unchanged.
func MaskURL(s string) string {
	s = urlPassword.ReplaceAllString(s, "${1}"+Mask+"@")
	return keywordPassword.ReplaceAllString(s, "${1}"+Mask)
}
