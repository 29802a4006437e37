package ccda

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Conversions of HL7 v3 data types to FHIR R4 JSON values. Each returns nil
// (or "") when there is nothing to say, so callers can set fields with put.

// put sets m[k] = v unless v is empty.
func put(m map[string]any, k string, v any) {
	switch x := v.(type) {
	case nil:
		return
	case string:
		if x == "" {
			return
		}
	case map[string]any:
		if len(x) == 0 {
			return
		}
	case []any:
		if len(x) == 0 {
			return
		}
	}
	m[k] = v
}

// dateTime converts an HL7 TS (YYYY[MM[DD[HH[MM[SS[.S+]]]]]][±ZZZZ]) to a FHIR
// dateTime. FHIR requires a time zone whenever a time is given, so a time
// without an offset is cut back to its date. It returns "" for values that
// are not valid times.
func dateTime(ts string) string {
	s, _ := convertTS(ts)
	return s
}

// instant converts an HL7 TS to a FHIR instant, which needs a time and an
// offset; "" otherwise.
func instant(ts string) string {
	s, withTime := convertTS(ts)
	if !withTime {
		return ""
	}
	return s
}

// date converts an HL7 TS to a FHIR date (the date part only).
func date(ts string) string {
	s, _ := convertTS(ts)
	if len(s) > 10 {
		s = s[:10]
	}
	return s
}

func convertTS(ts string) (string, bool) {
	ts = strings.TrimSpace(ts)
	main, zone := ts, ""
	if i := strings.IndexAny(ts, "+-"); i >= 0 {
		main, zone = ts[:i], ts[i:]
	}
	frac := ""
	if i := strings.IndexByte(main, '.'); i >= 0 {
		main, frac = main[:i], main[i+1:]
		if frac == "" || !digits(frac) {
			return "", false
		}
	}
	n := len(main)
	if !digits(main) || n < 4 || n%2 != 0 || n > 14 {
		return "", false
	}
	year, _ := strconv.Atoi(main[0:4])
	if year == 0 {
		return "", false
	}
	var b strings.Builder
	b.WriteString(main[0:4])
	if n >= 6 {
		mon, _ := strconv.Atoi(main[4:6])
		if mon < 1 || mon > 12 {
			return "", false
		}
		b.WriteString("-" + main[4:6])
		if n >= 8 {
			day, _ := strconv.Atoi(main[6:8])
			if day < 1 || day > daysIn(year, mon) {
				return "", false
			}
			b.WriteString("-" + main[6:8])
		}
	}
	if n <= 8 {
		return b.String(), false
	}
	off, ok := offset(zone)
	if !ok {
		return b.String(), false // a time with no zone: keep the date only
	}
	hh, mm, ss := main[8:10], "00", "00"
	if n >= 12 {
		mm = main[10:12]
	}
	if n >= 14 {
		ss = main[12:14]
	}
	h, _ := strconv.Atoi(hh)
	mi, _ := strconv.Atoi(mm)
	se, _ := strconv.Atoi(ss)
	if h > 23 || mi > 59 || se > 60 {
		return "", false
	}
	b.WriteString("T" + hh + ":" + mm + ":" + ss)
	if frac != "" && n == 14 {
		b.WriteString("." + frac)
	}
	b.WriteString(off)
	return b.String(), true
}

// offset converts ±HHMM (or ±HH) to ±HH:MM.
func offset(z string) (string, bool) {
	if len(z) != 5 && len(z) != 3 || !digits(z[1:]) {
		return "", false
	}
	hh, mm := z[1:3], "00"
	if len(z) == 5 {
		mm = z[3:5]
	}
	h, _ := strconv.Atoi(hh)
	m, _ := strconv.Atoi(mm)
	if h > 14 || m > 59 {
		return "", false
	}
	return z[:1] + hh + ":" + mm, true
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// period converts an interval to a FHIR Period (nil when empty).
func period(t Interval) map[string]any {
	p := map[string]any{}
	if t.Low == "" && t.High == "" {
		put(p, "start", dateTime(t.Value))
		put(p, "end", dateTime(t.Value))
	}
	put(p, "start", dateTime(t.Low))
	put(p, "end", dateTime(t.High))
	if len(p) == 0 {
		return nil
	}
	return p
}

// setEffective sets <prefix>DateTime for a point in time or <prefix>Period for
// an interval.
func setEffective(r map[string]any, prefix string, t Interval) {
	switch {
	case t.Low == "" && t.High == "":
		put(r, prefix+"DateTime", dateTime(t.Value))
	case t.High == "" || t.Low == t.High:
		if t.High == "" {
			if dt := dateTime(t.Low); dt != "" {
				r[prefix+"Period"] = map[string]any{"start": dt}
			}
			return
		}
		put(r, prefix+"DateTime", dateTime(t.Low))
	default:
		put(r, prefix+"Period", period(t))
	}
}

// decimal turns an HL7 REAL literal into a JSON number FHIR accepts, keeping
// its digits (and so its precision).
func decimal(s string) (json.Number, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "+")
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return "", false
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	exp := ""
	if i := strings.IndexAny(frac, "eE"); hasDot && i >= 0 {
		frac, exp = frac[:i], frac[i:]
	} else if i := strings.IndexAny(intPart, "eE"); !hasDot && i >= 0 {
		intPart, exp = intPart[:i], intPart[i:]
	}
	if intPart == "" {
		intPart = "0"
	}
	if !digits(intPart) || !digits(frac) || hasDot && frac == "" && exp != "" {
		return "", false
	}
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		intPart = "0"
	}
	out := intPart
	if frac != "" {
		out += "." + frac
	}
	if exp != "" {
		e := exp[1:]
		e = strings.TrimPrefix(e, "+")
		sign := ""
		if strings.HasPrefix(e, "-") {
			sign, e = "-", e[1:]
		}
		if e == "" || !digits(e) {
			return "", false
		}
		out += "e" + sign + e
	}
	if neg {
		out = "-" + out
	}
	return json.Number(out), true
}

// quantity converts a PQ value and unit to a FHIR Quantity with UCUM when the
// unit can be one.
func quantity(value, unit string) map[string]any {
	v, ok := decimal(value)
	if !ok {
		return nil
	}
	q := map[string]any{"value": v}
	if unit != "" && unit != "1" {
		q["unit"] = unit
	}
	if code, ok := ucum(unit); ok {
		q["system"] = "http://unitsofmeasure.org"
		q["code"] = code
	}
	return q
}

// coding converts one code (no translations) to a FHIR Coding.
func coding(c CD) map[string]any {
	if c.Code == "" {
		return nil
	}
	m := map[string]any{"code": c.Code}
	put(m, "system", systemURI(c.CodeSystem))
	put(m, "display", c.DisplayName)
	return m
}

// concept converts a coded value and its translations to a CodeableConcept;
// nil when there is no code and no text.
func concept(c CD) map[string]any {
	var codings []any
	if m := coding(c); m != nil {
		codings = append(codings, m)
	}
	for _, t := range c.Translations {
		if m := coding(t); m != nil {
			codings = append(codings, m)
		}
	}
	cc := map[string]any{}
	put(cc, "coding", codings)
	switch {
	case c.OriginalText != "":
		cc["text"] = c.OriginalText
	case c.Code == "" && c.DisplayName != "":
		cc["text"] = c.DisplayName
	}
	if len(cc) == 0 {
		return nil
	}
	return cc
}

// identifier converts an II to a FHIR Identifier: the root is the system and
// the extension the value; an identifier that is only a root becomes a URI
// value.
func identifier(i II) map[string]any {
	if !i.Valid() {
		return nil
	}
	if i.Extension == "" {
		v := idSystem(i.Root)
		if !strings.Contains(v, ":") {
			v = "urn:oid:" + v
		}
		return map[string]any{"system": "urn:ietf:rfc:3986", "value": v}
	}
	m := map[string]any{"system": idSystem(i.Root), "value": i.Extension}
	if i.AssigningAuthorityName != "" {
		m["assigner"] = map[string]any{"display": i.AssigningAuthorityName}
	}
	return m
}

func identifiers(ids []II) []any {
	var out []any
	for _, i := range ids {
		if m := identifier(i); m != nil {
			out = append(out, m)
		}
	}
	return out
}

var nameUses = map[string]string{"L": "official", "C": "official", "P": "nickname", "A": "nickname", "ASGN": "usual",
	"OR": "official", "SRCH": "temp", "PHON": "temp", "SNDX": "temp", "ABC": "usual", "IDE": "usual", "SYL": "usual"}

func humanName(n Name) map[string]any {
	m := map[string]any{}
	put(m, "use", nameUses[n.Use])
	if len(n.Family) > 0 {
		m["family"] = strings.Join(n.Family, " ")
	}
	put(m, "given", strs(n.Given))
	put(m, "prefix", strs(n.Prefix))
	put(m, "suffix", strs(n.Suffix))
	put(m, "text", n.Text)
	put(m, "period", period(Interval{Low: n.ValidLow, High: n.ValidHigh}))
	return m
}

func strs(s []string) []any {
	var out []any
	for _, v := range s {
		out = append(out, v)
	}
	return out
}

// displayName renders a name for a reference's display.
func displayName(ns []Name) string {
	if len(ns) == 0 {
		return ""
	}
	n := ns[0]
	if n.Text != "" {
		return n.Text
	}
	parts := append(append(append(append([]string{}, n.Prefix...), n.Given...), n.Family...), n.Suffix...)
	return strings.Join(parts, " ")
}

var addressUses = map[string]string{"H": "home", "HP": "home", "HV": "home", "WP": "work", "DIR": "work",
	"PUB": "work", "TMP": "temp", "OLD": "old", "BAD": "old", "PHYS": "", "PST": ""}

func address(a Address) map[string]any {
	m := map[string]any{}
	put(m, "use", addressUses[a.Use])
	switch a.Use {
	case "PHYS":
		m["type"] = "physical"
	case "PST":
		m["type"] = "postal"
	}
	put(m, "line", strs(a.Lines))
	put(m, "city", a.City)
	put(m, "district", a.County)
	put(m, "state", a.State)
	put(m, "postalCode", a.PostalCode)
	put(m, "country", a.Country)
	put(m, "period", period(Interval{Low: a.ValidLow, High: a.ValidHigh}))
	return m
}

var telecomUses = map[string]string{"H": "home", "HP": "home", "HV": "home", "WP": "work", "DIR": "work",
	"PUB": "work", "MC": "mobile", "PG": "mobile", "TMP": "temp", "BAD": "old", "EC": ""}

func contactPoint(t Telecom) map[string]any {
	v := strings.TrimSpace(t.Value)
	m := map[string]any{}
	scheme, rest, found := strings.Cut(v, ":")
	switch strings.ToLower(scheme) {
	case "tel":
		m["system"], v = "phone", rest
	case "fax":
		m["system"], v = "fax", rest
	case "mailto":
		m["system"], v = "email", rest
	case "http", "https":
		m["system"] = "url"
	default:
		if found {
			m["system"] = "other"
		} else {
			m["system"] = "phone"
		}
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	m["value"] = v
	put(m, "use", telecomUses[t.Use])
	return m
}
