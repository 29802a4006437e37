package mapping

import (
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Conversions from HL7 v2 primitive values to FHIR R4 primitives. They work on
// decoded strings and never include the value in their errors.

var (
	errNotDate    = errors.New("not an HL7 date/time (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])")
	errNotNumber  = errors.New("not an HL7 number")
	errNoTimezone = errors.New("time without an offset and no timezone configured")
)

// hl7Time is a parsed DTM/TS value.
type hl7Time struct {
	prec    int // number of digits of YYYYMMDDHHMMSS present: 4, 6, 8, 10, 12 or 14
	y, mo   int
	d, h, m int
	s       int
	frac    string // digits after the decimal point, at most 4 kept
	hasZone bool
	zoneMin int // offset east of UTC in minutes
}

func parseHL7Time(v string) (hl7Time, error) {
	var t hl7Time
	v = strings.TrimSpace(v)
	// TS in v2.3-2.5 may carry a degree of precision as component 2; only the
	// first component reaches here.
	i := 0
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	switch i {
	case 4, 6, 8, 10, 12, 14:
	default:
		return t, errNotDate
	}
	t.prec = i
	num := func(a, b int) int {
		n := 0
		for _, c := range v[a:b] {
			n = n*10 + int(c-'0')
		}
		return n
	}
	t.y, t.mo, t.d = num(0, 4), 1, 1
	if i >= 6 {
		t.mo = num(4, 6)
	}
	if i >= 8 {
		t.d = num(6, 8)
	}
	if i >= 10 {
		t.h = num(8, 10)
	}
	if i >= 12 {
		t.m = num(10, 12)
	}
	if i >= 14 {
		t.s = num(12, 14)
	}
	rest := v[i:]
	if strings.HasPrefix(rest, ".") {
		if t.prec != 14 {
			return t, errNotDate
		}
		j := 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if j == 1 {
			return t, errNotDate
		}
		t.frac = rest[1:j]
		if len(t.frac) > 4 {
			t.frac = t.frac[:4]
		}
		rest = rest[j:]
	}
	if rest != "" {
		if len(rest) != 5 || (rest[0] != '+' && rest[0] != '-') {
			return t, errNotDate
		}
		for _, c := range rest[1:] {
			if c < '0' || c > '9' {
				return t, errNotDate
			}
		}
		zh, zm := num(len(v)-4, len(v)-2), num(len(v)-2, len(v))
		if zh > 14 || zm > 59 || zh == 14 && zm > 0 {
			return t, errNotDate
		}
		t.hasZone = true
		t.zoneMin = zh*60 + zm
		if rest[0] == '-' {
			t.zoneMin = -t.zoneMin
		}
	}
	if t.mo < 1 || t.mo > 12 || t.d < 1 || t.d > daysIn(t.y, t.mo) || t.h > 23 || t.m > 59 || t.s > 60 {
		return t, errNotDate
	}
	return t, nil
}

func daysIn(y, m int) int {
	return time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// fhirDate converts to a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD), dropping any
// time part.
func fhirDate(v string) (string, error) {
	t, err := parseHL7Time(v)
	if err != nil {
		return "", err
	}
	b := make([]byte, 0, 10)
	b = appendInt(b, t.y, 4)
	if t.prec >= 6 {
		b = append(b, '-')
		b = appendInt(b, t.mo, 2)
	}
	if t.prec >= 8 {
		b = append(b, '-')
		b = appendInt(b, t.d, 2)
	}
	return string(b), nil
}

// fhirDateTime converts to a FHIR dateTime. Values with a time of day get
// seconds (FHIR requires them) and an offset: the value's own, or the offset
// of loc at that local time when the value has none.
func fhirDateTime(v string, loc *time.Location) (string, error) {
	t, err := parseHL7Time(v)
	if err != nil {
		return "", err
	}
	if t.prec <= 8 {
		return fhirDate(v)
	}
	b := make([]byte, 0, 29)
	b = appendInt(b, t.y, 4)
	b = append(b, '-')
	b = appendInt(b, t.mo, 2)
	b = append(b, '-')
	b = appendInt(b, t.d, 2)
	b = append(b, 'T')
	b = appendInt(b, t.h, 2)
	b = append(b, ':')
	b = appendInt(b, t.m, 2)
	b = append(b, ':')
	sec := t.s
	if sec == 60 { // leap second: FHIR allows 60 only in instants; keep the minute
		sec = 59
	}
	b = appendInt(b, sec, 2)
	if t.frac != "" {
		b = append(b, '.')
		b = append(b, t.frac...)
	}
	zone := t.zoneMin
	if !t.hasZone {
		if loc == nil {
			return "", errNoTimezone
		}
		_, off := time.Date(t.y, time.Month(t.mo), t.d, t.h, t.m, t.s, 0, loc).Zone()
		zone = off / 60
	}
	if zone == 0 && !t.hasZone {
		b = append(b, 'Z')
	} else {
		if zone < 0 {
			b = append(b, '-')
			zone = -zone
		} else {
			b = append(b, '+')
		}
		b = appendInt(b, zone/60, 2)
		b = append(b, ':')
		b = appendInt(b, zone%60, 2)
	}
	return string(b), nil
}

func appendInt(b []byte, n, width int) []byte {
	var tmp [8]byte
	i := len(tmp)
	for n > 0 || i == len(tmp) {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
	}
	for k := len(tmp) - i; k < width; k++ {
		b = append(b, '0')
	}
	return append(b, tmp[i:]...)
}

// fhirDecimal converts an HL7 NM value to a JSON number kept exactly as sent
// (no float rounding): "+5" → 5, ".5" → 0.5, "5." → 5, "007" → 7.
func fhirDecimal(v string) (json.Number, error) {
	s := strings.TrimSpace(v)
	if s == "" {
		return "", errNotNumber
	}
	neg := false
	switch s[0] {
	case '+':
		s = s[1:]
	case '-':
		neg = true
		s = s[1:]
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" && frac == "" {
		return "", errNotNumber
	}
	if !allDigits(intPart) || !allDigits(frac) {
		return "", errNotNumber
	}
	// the result is a slice of s (no copy) unless the integer part is empty
	start := len(intPart) - len(strings.TrimLeft(intPart, "0"))
	if start == len(intPart) && start > 0 {
		start-- // keep one zero
	}
	end := len(intPart)
	if hasDot && frac != "" {
		end = len(s)
	}
	var out string
	switch {
	case intPart != "":
		out = s[start:end]
	case end == len(s):
		out = "0." + frac
	default:
		out = "0"
	}
	if neg && strings.Trim(out, "0.") != "" {
		out = "-" + out
	}
	return json.Number(out), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
