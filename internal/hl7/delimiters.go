package hl7

// Delimiters are the separator characters a message declares in MSH-1 and MSH-2 (or FHS/BHS-1 and -2).
// A zero byte means the message declares no such character.
type Delimiters struct {
	Field, Component, Repetition, Escape, Subcomponent, Truncation byte // Truncation is 0 if none
}

// DefaultDelimiters are the delimiters HL7 recommends: |^~\&.
var DefaultDelimiters = Delimiters{'|', '^', '~', '\\', '&', 0}

// EncodingChars returns MSH-2 as a sender would write it for d: component, repetition, escape, subcomponent and
// truncation characters in that order, leaving out the ones d does not have.
func (d Delimiters) EncodingChars() string {
	b := make([]byte, 0, 5)
	for _, c := range [...]byte{d.Component, d.Repetition, d.Escape, d.Subcomponent, d.Truncation} {
		if c != 0 {
			b = append(b, c)
		}
	}
	return string(b)
}

// validDelimiter reports whether c may serve as a delimiter: printable ASCII, neither a letter, a digit nor a
// space.
func validDelimiter(c byte) bool {
	switch {
	case c <= ' ' || c >= 0x7f:
		return false
	case c >= '0' && c <= '9', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		return false
	}
	return true
}

// readDelimiters interprets MSH-1 (fs) and MSH-2 (enc). Encoding characters are positional, except that a short
// MSH-2 made only of the standard characters in their standard order ("^~&", "^\&") is read by identity: many
// senders leave out the escape or the repetition character that way. It returns a detail text on failure.
func readDelimiters(fs byte, enc []byte) (Delimiters, string) {
	d := Delimiters{Field: fs}
	if !validDelimiter(fs) {
		return d, "field separator is not a printable punctuation character"
	}
	if len(enc) == 0 {
		return d, "encoding characters (field 2) are missing"
	}
	if len(enc) > 5 {
		return d, "more than five encoding characters"
	}
	if len(enc) < 4 && isStandardSubsequence(enc) {
		for _, c := range enc {
			switch c {
			case '^':
				d.Component = c
			case '~':
				d.Repetition = c
			case '\\':
				d.Escape = c
			case '&':
				d.Subcomponent = c
			}
		}
	} else {
		slots := [...]*byte{&d.Component, &d.Repetition, &d.Escape, &d.Subcomponent, &d.Truncation}
		for i, c := range enc {
			*slots[i] = c
		}
	}
	var seen [256]bool
	seen[fs] = true
	for _, c := range enc {
		if !validDelimiter(c) {
			return d, "encoding characters include a character that cannot be a delimiter"
		}
		if seen[c] {
			return d, "delimiters are not distinct"
		}
		seen[c] = true
	}
	return d, ""
}

// isStandardSubsequence reports whether enc is "^~\&" with some characters left out, order kept.
func isStandardSubsequence(enc []byte) bool {
	const std = "^~\\&"
	j := 0
	for _, c := range enc {
		for j < len(std) && std[j] != c {
			j++
		}
		if j == len(std) {
			return false
		}
		j++
	}
	return true
}
