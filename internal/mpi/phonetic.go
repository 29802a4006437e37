package mpi

// nysiis returns the New York State Identification and Intelligence System
// phonetic code of a folded name (lower-case letters a-z; anything else is
// ignored). Names that sound alike (brown, browne; smith, smyth) share a code.
// The code is not truncated.
func nysiis(name string) string {
	b := make([]byte, 0, len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' {
			b = append(b, c-'a'+'A')
		} else if c >= 'A' && c <= 'Z' {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return ""
	}
	// Leading letter groups.
	switch {
	case hasPrefix(b, "MAC"):
		b[1] = 'C'
	case hasPrefix(b, "KN"):
		b[0] = 'N'
	case b[0] == 'K':
		b[0] = 'C'
	case hasPrefix(b, "PH"), hasPrefix(b, "PF"):
		b[0], b[1] = 'F', 'F'
	case hasPrefix(b, "SCH"):
		b[1], b[2] = 'S', 'S'
	}
	// Trailing letter groups.
	if n := len(b); n >= 2 {
		switch string(b[n-2:]) {
		case "EE", "IE":
			b = append(b[:n-2], 'Y')
		case "DT", "RT", "RD", "NT", "ND":
			b = append(b[:n-2], 'D')
		}
	}
	key := []byte{b[0]}
	for i := 1; i < len(b); i++ {
		c := b[i]
		var add []byte
		switch {
		case c == 'E' && i+1 < len(b) && b[i+1] == 'V':
			b[i], b[i+1] = 'A', 'F'
			add = b[i : i+2]
			i++
		case isVowel(c) || c == 'Y':
			// Y is treated as a vowel after the first letter (smith, smyth).
			b[i] = 'A'
			add = b[i : i+1]
		case c == 'Q':
			b[i] = 'G'
			add = b[i : i+1]
		case c == 'Z':
			b[i] = 'S'
			add = b[i : i+1]
		case c == 'M':
			b[i] = 'N'
			add = b[i : i+1]
		case c == 'K':
			if i+1 < len(b) && b[i+1] == 'N' {
				b[i] = 'N'
			} else {
				b[i] = 'C'
			}
			add = b[i : i+1]
		case c == 'S' && i+2 < len(b) && b[i+1] == 'C' && b[i+2] == 'H':
			b[i+1], b[i+2] = 'S', 'S'
			add = b[i : i+3]
			i += 2
		case c == 'P' && i+1 < len(b) && b[i+1] == 'H':
			b[i], b[i+1] = 'F', 'F'
			add = b[i : i+2]
			i++
		case c == 'H' && (!isVowel(b[i-1]) || (i+1 < len(b) && !isVowel(b[i+1])) || i+1 == len(b)):
			b[i] = b[i-1]
			add = b[i : i+1]
		case c == 'W' && isVowel(b[i-1]):
			b[i] = b[i-1]
			add = b[i : i+1]
		default:
			add = b[i : i+1]
		}
		for _, a := range add {
			if key[len(key)-1] != a {
				key = append(key, a)
			}
		}
	}
	if n := len(key); n > 1 && key[n-1] == 'S' {
		key = key[:n-1]
	}
	if n := len(key); n > 2 && key[n-2] == 'A' && key[n-1] == 'Y' {
		key = append(key[:n-2], 'Y')
	}
	if n := len(key); n > 1 && key[n-1] == 'A' {
		key = key[:n-1]
	}
	return string(key)
}

func hasPrefix(b []byte, p string) bool {
	return len(b) >= len(p) && string(b[:len(p)]) == p
}

// isVowel reports whether c is a vowel; after the vowel step every vowel is
// 'A', so checking the original set covers both states.
func isVowel(c byte) bool {
	switch c {
	case 'A', 'E', 'I', 'O', 'U':
		return true
	}
	return false
}
