package ccda

import (
	"strings"

	"github.com/beevik/etree"
)

// Lookups over a normalised tree. They match the local name and the
// canonical namespace (see normalise), so a sender's choice of prefixes does
// not matter, and sdtc extensions never pass for v3 elements.

// child returns the first v3 child element named name, or nil.
func child(e *etree.Element, name string) *etree.Element {
	return childNS(e, spV3, name)
}

func childNS(e *etree.Element, space, name string) *etree.Element {
	if e == nil {
		return nil
	}
	for _, t := range e.Child {
		if c, ok := t.(*etree.Element); ok && c.Tag == name && c.Space == space {
			return c
		}
	}
	return nil
}

// children returns every v3 child element named name.
func children(e *etree.Element, name string) []*etree.Element {
	return childrenNS(e, spV3, name)
}

func childrenNS(e *etree.Element, space, name string) []*etree.Element {
	if e == nil {
		return nil
	}
	var out []*etree.Element
	for _, t := range e.Child {
		if c, ok := t.(*etree.Element); ok && c.Tag == name && c.Space == space {
			out = append(out, c)
		}
	}
	return out
}

// elems returns every child element in the v3 namespace.
func elems(e *etree.Element) []*etree.Element {
	if e == nil {
		return nil
	}
	var out []*etree.Element
	for _, t := range e.Child {
		if c, ok := t.(*etree.Element); ok && c.Space == spV3 {
			out = append(out, c)
		}
	}
	return out
}

// walk follows a chain of v3 child names, taking the first match each time.
func walk(e *etree.Element, names ...string) *etree.Element {
	for _, n := range names {
		e = child(e, n)
		if e == nil {
			return nil
		}
	}
	return e
}

// attr returns the value of the attribute key in no namespace, trimmed.
func attr(e *etree.Element, key string) string {
	if e == nil {
		return ""
	}
	for _, a := range e.Attr {
		if a.Key == key && a.Space == "" {
			return strings.TrimSpace(a.Value)
		}
	}
	return ""
}

// xsiType returns the local part of the xsi:type attribute.
func xsiType(e *etree.Element) string {
	if e == nil {
		return ""
	}
	for _, a := range e.Attr {
		if a.Key == "type" && a.Space == spXSI {
			v := strings.TrimSpace(a.Value)
			if i := strings.IndexByte(v, ':'); i >= 0 {
				v = v[i+1:]
			}
			return v
		}
	}
	return ""
}

// text returns the text content of e and all its descendants, with runs of
// white space collapsed to one space.
func text(e *etree.Element) string {
	if e == nil {
		return ""
	}
	var b strings.Builder
	var rec func(*etree.Element)
	rec = func(e *etree.Element) {
		for _, t := range e.Child {
			switch t := t.(type) {
			case *etree.CharData:
				b.WriteString(t.Data)
			case *etree.Element:
				if t.Tag == "br" || t.Tag == "td" || t.Tag == "th" || t.Tag == "paragraph" || t.Tag == "item" || t.Tag == "tr" {
					b.WriteByte(' ')
				}
				rec(t)
			}
		}
	}
	rec(e)
	return strings.Join(strings.Fields(b.String()), " ")
}

// isNull reports whether e is absent or carries a nullFlavor.
func isNull(e *etree.Element) bool { return e == nil || attr(e, "nullFlavor") != "" }
