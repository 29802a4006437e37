package fhir

import (
	"encoding/json"
	"slices"
	"unicode/utf8"
)

// Marshal returns the JSON encoding of v, byte for byte what
// encoding/json.Marshal returns for it: object keys sorted, strings escaped
// for HTML, invalid UTF-8 replaced. The values resources are built of (maps
// with string keys, slices, strings, booleans and nil) are written directly,
// without reflection; any other value (a number, a struct) is written by
// encoding/json.
func Marshal(v any) ([]byte, error) {
	return AppendJSON(make([]byte, 0, 512), v)
}

// AppendJSON appends the JSON encoding of v (as Marshal writes it) to dst.
// On error dst is returned as it was.
func AppendJSON(dst []byte, v any) ([]byte, error) {
	out, err := appendValue(dst, v)
	if err != nil {
		return dst, err
	}
	return out, nil
}

func appendValue(b []byte, v any) ([]byte, error) {
	switch t := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return AppendJSONString(b, t), nil
	case bool:
		if t {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case map[string]any:
		return appendObject(b, t, appendValue)
	case Resource:
		return appendObject(b, t, appendValue)
	case []any:
		return appendArray(b, t, appendValue)
	case []string:
		return appendArray(b, t, appendStringValue)
	case map[string]string:
		return appendObject(b, t, appendStringValue)
	}
	enc, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, enc...), nil
}

// appendObject writes m with its keys in encoding/json's order, each value
// written by val.
func appendObject[M ~map[string]V, V any](b []byte, m M, val func([]byte, V) ([]byte, error)) ([]byte, error) {
	if m == nil {
		return append(b, "null"...), nil
	}
	var buf [16]string
	keys := sortedKeys(buf[:0], m)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, k)
		b = append(b, ':')
		var err error
		if b, err = val(b, m[k]); err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

// appendArray writes list as a JSON array, each item with val; a nil list
// is null, as encoding/json writes it.
func appendArray[E any](b []byte, list []E, val func([]byte, E) ([]byte, error)) ([]byte, error) {
	if list == nil {
		return append(b, "null"...), nil
	}
	b = append(b, '[')
	for i, e := range list {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = val(b, e); err != nil {
			return b, err
		}
	}
	return append(b, ']'), nil
}

func appendStringValue(b []byte, s string) ([]byte, error) { return AppendJSONString(b, s), nil }

// sortedKeys appends m's keys to keys, in the byte order encoding/json
// writes them in.
func sortedKeys[M ~map[string]V, V any](keys []string, m M) []string {
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

const hexDigits = "0123456789abcdef"

// plain tells the ASCII characters a JSON string holds as they are.
var plain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// AppendJSONString appends s as a JSON string the way encoding/json writes
// it: quotes, backslashes and control characters escaped (\b, \f, \n, \r and
// \t by name, the others as \u00XX), <, > and & as \u003c, \u003e and
// \u0026, U+2028 and U+2029 as \u2028 and \u2029, and each byte of invalid
// UTF-8 as \ufffd.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0 // s[start:i] is to be copied as it is
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
