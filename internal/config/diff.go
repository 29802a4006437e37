package config

import (
	"reflect"
	"strings"
)

// Differences lists the settings that differ between a and b, by YAML path
// ("mllp.addr", "store.raw_retention"): a structure is compared setting by
// setting, a list or a map as a whole. Only names are listed, never values
// (some are secrets).
func Differences(a, b *Config) []string {
	var out []string
	diffStruct(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "", &out)
	return out
}

func diffStruct(a, b reflect.Value, prefix string, out *[]string) {
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		path := prefix + name
		av, bv := a.Field(i), b.Field(i)
		if f.Type.Kind() == reflect.Struct {
			diffStruct(av, bv, path+".", out)
			continue
		}
		if !sameValue(av, bv) {
			*out = append(*out, path)
		}
	}
}

// sameValue compares two settings; an empty list or map and none are the
// same.
func sameValue(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Slice, reflect.Map:
		if a.Len() == 0 && b.Len() == 0 {
			return true
		}
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}
