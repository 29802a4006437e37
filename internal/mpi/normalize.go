package mpi

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// fold lower-cases s and strips diacritics (NFD, marks removed), so that
// "Muñoz" and "MUNOZ" compare equal. Letters that NFD does not decompose
// (ß, æ, ø, ł, ...) are spelled out. ASCII input takes a fast path.
func fold(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
	out, _, err := transform.String(t, s)
	if err != nil {
		out = s
	}
	out = strings.ToLower(out)
	if strings.ContainsAny(out, "ßæœøłđþ") {
		out = strings.NewReplacer("ß", "ss", "æ", "ae", "œ", "oe", "ø", "o", "ł", "l", "đ", "d", "þ", "th").Replace(out)
	}
	return out
}

// nameTokens folds a name and splits it into tokens of letters only.
// Apostrophes and hyphens join ("O'Brien" is "obrien"), other punctuation and
// spaces separate.
func nameTokens(s string) []string {
	s = fold(s)
	var toks []string
	var b strings.Builder
	flush := func() {
		if b.Len() > 0 {
			toks = append(toks, b.String())
			b.Reset()
		}
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', unicode.IsLetter(r):
			b.WriteRune(r)
		case r == '\'' || r == '’' || r == '`':
			// joins: o'brien
		default:
			flush()
		}
	}
	flush()
	return toks
}

// digits keeps only the ASCII digits of s.
func digits(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// alnum keeps ASCII letters and digits of s, upper-cased.
func alnum(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'A' && c <= 'Z':
			b.WriteByte(c)
		case c >= 'a' && c <= 'z':
			b.WriteByte(c - 'a' + 'A')
		}
	}
	return b.String()
}

// normDate turns YYYYMMDD, YYYY-MM-DD or YYYYMMDDhhmm... (HL7 TS) into
// YYYYMMDD; anything shorter gives "". Month and day are not range-checked:
// a clerk's typo in them is still evidence for partial agreement.
func normDate(s string) string {
	d := digits(s)
	if len(d) < 8 {
		return ""
	}
	return d[:8]
}

// normSex maps administrative sex codes to 'M', 'F' or 0 (unknown).
func normSex(s string) byte {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "M", "MALE":
		return 'M'
	case "F", "FEMALE":
		return 'F'
	}
	return 0
}

// normPhone keeps the last nine digits of a phone number, which drops
// country codes and trunk prefixes (+61 2 ..., 02 ...; +1 212 ..., 212 ...).
func normPhone(s string) string {
	d := digits(s)
	if len(d) > 9 {
		d = d[len(d)-9:]
	}
	if len(d) < 7 {
		return ""
	}
	return d
}

// streetWords maps common street-type words to one spelling.
var streetWords = map[string]string{
	"street": "st", "str": "st", "road": "rd", "avenue": "ave", "av": "ave",
	"place": "pl", "drive": "dr", "court": "ct", "crescent": "cres", "cr": "cres",
	"lane": "ln", "terrace": "tce", "ter": "tce", "parade": "pde", "highway": "hwy",
	"boulevard": "blvd", "circuit": "cct", "close": "cl", "grove": "gr",
	"square": "sq", "way": "wy", "north": "n", "south": "s", "east": "e", "west": "w",
	"apartment": "apt", "unit": "u", "suite": "ste",
}

// splitAddress folds address lines and separates the house number of the
// first line from the street; the remaining lines become one string.
func splitAddress(lines []string) (house, street, rest string) {
	var first []string
	i := 0
	for ; i < len(lines); i++ {
		first = addrTokens(lines[i])
		if len(first) > 0 {
			i++
			break
		}
	}
	if len(first) > 0 && first[0][0] >= '0' && first[0][0] <= '9' {
		house = first[0]
		first = first[1:]
	}
	street = strings.Join(first, " ")
	var more []string
	for ; i < len(lines); i++ {
		more = append(more, addrTokens(lines[i])...)
	}
	rest = strings.Join(more, " ")
	return house, street, rest
}

func addrTokens(s string) []string {
	toks := strings.FieldsFunc(fold(s), func(r rune) bool {
		return !(unicode.IsLetter(r) || unicode.IsDigit(r))
	})
	for i, t := range toks {
		if w, ok := streetWords[t]; ok {
			toks[i] = w
		}
	}
	return toks
}
