package config

import (
	"reflect"
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
// durations as strings ("15m0s"), with secrets that are set replaced by
// Mask. It is what `vnum config show` prints.
func (c *Config) Masked() map[string]any {
	return toMap(reflect.ValueOf(*c), "")
}

func toMap(v reflect.Value, prefix string) map[string]any {
	out := map[string]any{}
	t := v.Type()
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
		fv := v.Field(i)
		switch {
		case f.Type.Kind() == reflect.Struct:
			out[tag] = toMap(fv, key)
		case f.Type == reflect.TypeFor[time.Duration]():
			out[tag] = time.Duration(fv.Int()).String()
		case secretKeys[key] && fv.String() != "":
			out[tag] = Mask
		case f.Type.Kind() == reflect.Slice:
			xs := make([]string, fv.Len())
			for j := range xs {
				xs[j] = fv.Index(j).String()
			}
			out[tag] = xs
		default:
			out[tag] = fv.Interface()
		}
	}
	return out
}
