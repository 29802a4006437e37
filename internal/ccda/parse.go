package ccda

import (
	"bytes"
	"crypto/sha1"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/beevik/etree"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/unicode"
)

// Limits bound what Parse accepts. A zero field takes the DefaultLimits value.
type Limits struct {
	MaxBytes    int64 // input size
	MaxDepth    int   // element nesting
	MaxElements int   // start tags in the whole input
}

// DefaultLimits fit every vendor document seen so far (the largest, 2.2 MB,
// nests 20 deep and holds about 29,000 elements) with wide margins.
var DefaultLimits = Limits{MaxBytes: 20 << 20, MaxDepth: 256, MaxElements: 1_000_000}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultLimits.MaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultLimits.MaxDepth
	}
	if l.MaxElements <= 0 {
		l.MaxElements = DefaultLimits.MaxElements
	}
	return l
}

// Namespaces a CDA document uses.
const (
	nsV3   = "urn:hl7-org:v3"
	nsSDTC = "urn:hl7-org:sdtc"
	nsXSI  = "http://www.w3.org/2001/XMLSchema-instance"
)

// Canonical values of etree's Space fields after normalise: elements and
// attributes are matched on these, never on the prefixes the sender chose.
const (
	spV3   = ""      // urn:hl7-org:v3 (elements); no namespace (attributes)
	spSDTC = "sdtc"  // urn:hl7-org:sdtc
	spXSI  = "xsi"   // XML Schema instance
	spNone = "#none" // an element in no namespace
)

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// ParseReader reads at most lim.MaxBytes (plus one byte to detect an
// oversize input) from r and parses it.
func ParseReader(r io.Reader, lim Limits) (*Document, error) {
	lim = lim.withDefaults()
	data, err := io.ReadAll(io.LimitReader(r, lim.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read document: %w", err)
	}
	return Parse(data, lim)
}

// Parse reads a C-CDA document safely: a DOCTYPE (and with it every entity
// declaration) is refused, no external resource is ever fetched, and size,
// depth and element count are checked on the raw bytes before a tree is
// built. Errors are *Error values naming an XML path or line and what is
// wrong. Any CDA R2 ClinicalDocument is accepted; Document.Profile tells a
// C-CDA from an older CCD 1.0 / HITSP C32 document.
func Parse(data []byte, lim Limits) (*Document, error) {
	lim = lim.withDefaults()
	if len(data) == 0 {
		return nil, &Error{Err: ErrEmpty}
	}
	if int64(len(data)) > lim.MaxBytes {
		return nil, &Error{Err: ErrTooLarge, Msg: fmt.Sprintf("input is %d bytes, the limit is %d", len(data), lim.MaxBytes)}
	}
	sum := sha1.Sum(data)
	size := len(data)
	data, err := toUTF8(data)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &Error{Err: ErrEmpty, Msg: "input holds only white space"}
	}
	if err := prescan(data, lim); err != nil {
		return nil, err
	}

	tree := etree.NewDocument()
	tree.ReadSettings = etree.ReadSettings{CharsetReader: charsetReader, MaxDepth: lim.MaxDepth + 1}
	if err := tree.ReadFromBytes(data); err != nil {
		if errors.Is(err, etree.ErrXML) {
			if located := locateMalformed(data); located != nil {
				return nil, located
			}
		}
		return nil, xmlError(err)
	}
	root := tree.Root()
	if root == nil {
		return nil, &Error{Err: ErrNotCDA, Msg: "no root element"}
	}
	if root.Tag != "ClinicalDocument" || root.NamespaceURI() != nsV3 {
		return nil, &Error{Path: "/" + root.FullTag(), Err: ErrNotCDA,
			Msg: "root element is not ClinicalDocument in namespace " + nsV3}
	}
	ids, err := normalise(root)
	if err != nil {
		return nil, err
	}
	d := &Document{root: root, ids: ids, Size: size, SHA1: sum[:]}
	if err := d.readHeader(); err != nil {
		return nil, err
	}
	d.readBody()
	return d, nil
}

// Detect reports whether data looks like a CDA document: its first element is
// ClinicalDocument in the HL7 v3 namespace. It reads at most the first 64 KiB
// and never fails; Parse decides whether the document is acceptable.
func Detect(data []byte) bool {
	if len(data) > 64<<10 {
		data = data[:64<<10]
	}
	data, err := toUTF8(data)
	if err != nil {
		return false
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.CharsetReader = charsetReader
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se.Name.Local == "ClinicalDocument" && se.Name.Space == nsV3
		}
	}
}

// toUTF8 drops a UTF-8 byte-order mark and converts UTF-16 input (recognised
// by its byte-order mark) to UTF-8.
func toUTF8(data []byte) ([]byte, error) {
	if bytes.HasPrefix(data, utf8BOM) {
		return data[len(utf8BOM):], nil
	}
	if len(data) >= 2 && ((data[0] == 0xFF && data[1] == 0xFE) || (data[0] == 0xFE && data[1] == 0xFF)) {
		out, err := unicode.UTF16(unicode.BigEndian, unicode.UseBOM).NewDecoder().Bytes(data)
		if err != nil {
			return nil, &Error{Err: ErrEncoding, Msg: "invalid UTF-16 input"}
		}
		return out, nil
	}
	return data, nil
}

// charsetReader lets documents declare Latin-1 or Windows-1252. UTF-16 input
// was converted before parsing, so its declaration passes through.
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(strings.TrimSpace(charset)) {
	case "utf-8", "utf8", "us-ascii", "ascii", "utf-16", "utf-16le", "utf-16be":
		return input, nil
	case "iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "iso_8859-1":
		return charmap.ISO8859_1.NewDecoder().Reader(input), nil
	case "windows-1252", "cp1252", "x-cp1252":
		return charmap.Windows1252.NewDecoder().Reader(input), nil
	}
	return nil, &Error{Err: ErrEncoding, Msg: "declared encoding is not supported (UTF-8, UTF-16, ISO-8859-1, Windows-1252 are)"}
}

// xmlError turns an error of the XML tokenizer into a located *Error.
func xmlError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return &Error{Line: se.Line, Err: ErrMalformed, Msg: "not well-formed XML: " + redactEntities(se.Msg)}
	}
	if errors.Is(err, etree.ErrMaxDepth) {
		return &Error{Err: ErrTooDeep}
	}
	return &Error{Err: ErrMalformed, Msg: "not well-formed XML: " + err.Error()}
}

// locateMalformed finds where data is not well-formed when etree could
// only say that it is not (etree reads raw tokens, so an end tag that does
// not match or an element never closed shows only as an unbalanced tree):
// encoding/xml's strict tokenizer, which checks both, runs over it again and
// the first error is returned with its line; an element left open is named
// with the line of its start tag. It returns nil if it finds nothing.
func locateMalformed(data []byte) *Error {
	type open struct {
		name string
		line int
	}
	var stack []open
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.CharsetReader = charsetReader
	for {
		line, _ := dec.InputPos()
		tok, err := dec.Token()
		if err != nil {
			var se *xml.SyntaxError
			switch {
			case errors.As(err, &se) && se.Msg == "unexpected EOF" && len(stack) > 0:
				top := stack[len(stack)-1]
				return &Error{Line: top.line, Err: ErrMalformed,
					Msg: "not well-formed XML: element <" + top.name + "> is never closed (the input ends inside it)"}
			case errors.As(err, &se):
				return &Error{Line: se.Line, Err: ErrMalformed, Msg: "not well-formed XML: " + redactEntities(se.Msg)}
			}
			return nil
		}
		switch t := tok.(type) {
		case xml.StartElement:
			stack = append(stack, open{t.Name.Local, line})
		case xml.EndElement:
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		}
	}
}

// prescan walks the raw bytes once, before any tree is built, and refuses
// markup declarations (DOCTYPE, ENTITY: the only way to declare an entity, so
// this also stops entity expansion attacks), nesting deeper than lim.MaxDepth
// and more than lim.MaxElements start tags. It only needs to find '<' bytes,
// which cannot occur unescaped in well-formed text or attribute values; the
// tokenizer checks everything else afterwards.
func prescan(data []byte, lim Limits) error {
	var stack [][]byte
	elements := 0
	i := 0
	for {
		j := bytes.IndexByte(data[i:], '<')
		if j < 0 {
			return nil
		}
		i += j
		rest := data[i:]
		switch {
		case bytes.HasPrefix(rest, []byte("<!--")):
			k := bytes.Index(rest[4:], []byte("-->"))
			if k < 0 {
				return nil // unterminated comment: the tokenizer reports it with its line
			}
			i += 4 + k + 3
		case bytes.HasPrefix(rest, []byte("<![CDATA[")):
			k := bytes.Index(rest, []byte("]]>"))
			if k < 0 {
				return nil
			}
			i += k + 3
		case bytes.HasPrefix(rest, []byte("<!")):
			return &Error{Path: stackPath(stack), Line: lineAt(data, i), Err: ErrDTD}
		case bytes.HasPrefix(rest, []byte("<?")):
			k := bytes.Index(rest, []byte("?>"))
			if k < 0 {
				return nil
			}
			i += k + 2
		case bytes.HasPrefix(rest, []byte("</")):
			k := bytes.IndexByte(rest, '>')
			if k < 0 {
				return nil
			}
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			i += k + 1
		default:
			elements++
			if elements > lim.MaxElements {
				return &Error{Path: stackPath(stack), Line: lineAt(data, i), Err: ErrTooMany,
					Msg: fmt.Sprintf("more than %d elements", lim.MaxElements)}
			}
			name := tagName(rest[1:])
			end, selfClosing := tagEnd(rest)
			if end < 0 {
				return nil
			}
			if !selfClosing {
				stack = append(stack, name)
				if len(stack) > lim.MaxDepth {
					return &Error{Path: stackPath(stack), Line: lineAt(data, i), Err: ErrTooDeep,
						Msg: fmt.Sprintf("elements nested deeper than %d", lim.MaxDepth)}
				}
			}
			i += end + 1
		}
	}
}

// tagName returns the name at the start of a tag (after '<').
func tagName(b []byte) []byte {
	for k, c := range b {
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '>' || c == '/' {
			return b[:k]
		}
		if k == 64 {
			return b[:k]
		}
	}
	return b
}

// tagEnd finds the '>' closing a start tag, skipping quoted attribute values,
// and tells whether the tag closes itself.
func tagEnd(b []byte) (int, bool) {
	var quote byte
	for k := 1; k < len(b); k++ {
		c := b[k]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '>':
			return k, b[k-1] == '/'
		}
	}
	return -1, false
}

// redactEntities hides entity names the tokenizer quotes from the input
// ("invalid character entity &name;"), which the sender chose freely.
func redactEntities(msg string) string {
	i := strings.IndexByte(msg, '&')
	if i < 0 {
		return msg
	}
	j := strings.IndexAny(msg[i:], "; ")
	if j < 0 {
		return msg[:i+1] + "..."
	}
	return msg[:i+1] + "..." + redactEntities(msg[i+j:])
}

func lineAt(data []byte, off int) int { return bytes.Count(data[:off], []byte{'\n'}) + 1 }

// stackPath renders the element names of the prescan stack, shortening deep
// paths to their first and last few steps.
func stackPath(stack [][]byte) string {
	var b strings.Builder
	for i, n := range stack {
		if len(stack) > 10 && i == 4 {
			fmt.Fprintf(&b, "/...(%d more)", len(stack)-7)
		}
		if len(stack) > 10 && i >= 4 && i < len(stack)-3 {
			continue
		}
		b.WriteByte('/')
		b.Write(n)
	}
	return b.String()
}

// nsFrame holds the prefixes one element declares; lookups walk up the
// chain (at most MaxDepth frames), so nothing is copied per element.
type nsFrame struct {
	prefixes map[string]string
	up       *nsFrame
}

func (f *nsFrame) lookup(prefix string) (string, bool) {
	for ; f != nil; f = f.up {
		if uri, ok := f.prefixes[prefix]; ok {
			return uri, true
		}
	}
	return "", false
}

// normalise rewrites the Space of every element and attribute from the
// sender's prefix to a canonical marker of its namespace URI (spV3, spSDTC,
// spXSI, spNone or the URI itself), so that later lookups match on namespaces
// rather than prefixes. It also indexes the elements carrying an ID attribute,
// which narrative references point to.
func normalise(root *etree.Element) (map[string]*etree.Element, error) {
	ids := make(map[string]*etree.Element)
	var walk func(e *etree.Element, def string, frame *nsFrame) error
	walk = func(e *etree.Element, def string, frame *nsFrame) error {
		var own map[string]string
		for _, a := range e.Attr {
			switch {
			case a.Space == "" && a.Key == "xmlns":
				def = a.Value
			case a.Space == "xmlns":
				if own == nil {
					own = map[string]string{}
				}
				own[a.Key] = a.Value
			}
		}
		if own != nil {
			frame = &nsFrame{prefixes: own, up: frame}
		}
		if e.Space == "" {
			e.Space = canonicalElement(def)
		} else if uri, ok := frame.lookup(e.Space); ok {
			e.Space = canonicalElement(uri)
		} else if e.Space == "sdtc" {
			e.Space = spSDTC // a common slip: the sdtc prefix used without its declaration
		} else if e.Space != "xml" {
			return &Error{Path: elementPath(e), Err: ErrUnboundName, Msg: "element uses an undeclared namespace prefix"}
		}
		for i := range e.Attr {
			a := &e.Attr[i]
			switch {
			case a.Space == "" || a.Space == "xmlns" || a.Space == "xml":
			default:
				uri, ok := frame.lookup(a.Space)
				switch {
				case ok && uri == nsXSI:
					a.Space = spXSI
				case ok && uri == nsSDTC:
					a.Space = spSDTC
				case ok:
					a.Space = uri
				case a.Space == "xsi":
					a.Space = spXSI
				default:
					return &Error{Path: elementPath(e), Err: ErrUnboundName, Msg: "attribute uses an undeclared namespace prefix"}
				}
			}
			if a.Space == "" && (a.Key == "ID" || a.Key == "id") && a.Value != "" {
				if _, dup := ids[a.Value]; !dup || a.Key == "ID" {
					ids[a.Value] = e
				}
			}
		}
		for _, t := range e.Child {
			if c, ok := t.(*etree.Element); ok {
				if err := walk(c, def, frame); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return ids, walk(root, "", nil)
}

func canonicalElement(uri string) string {
	switch uri {
	case nsV3:
		return spV3
	case nsSDTC:
		return spSDTC
	case "":
		return spNone
	}
	return uri
}

// elementPath renders the XML path of e with 1-based positions among
// same-named siblings: /ClinicalDocument/recordTarget[1]/patientRole[1]/id[2].
// It scans siblings; Document.path caches positions for repeated use.
func elementPath(e *etree.Element) string { return pathWith(e, nil) }

// ordinals holds, per parent element, the same-name position of each child
// token (indexed like Child), computed once per parent.
type ordinals map[*etree.Element][]int32

func (o ordinals) of(parent *etree.Element) []int32 {
	if ords, ok := o[parent]; ok {
		return ords
	}
	ords := make([]int32, len(parent.Child))
	counts := map[string]int32{}
	for i, t := range parent.Child {
		if c, ok := t.(*etree.Element); ok {
			k := c.Space + "\x00" + c.Tag
			counts[k]++
			ords[i] = counts[k]
		}
	}
	o[parent] = ords
	return ords
}

func pathWith(e *etree.Element, o ordinals) string {
	var steps []string
	for ; e != nil; e = e.Parent() {
		p := e.Parent()
		if p == nil || p.Parent() == nil && p.Tag == "" {
			steps = append(steps, e.Tag)
			break
		}
		var n int
		if o != nil {
			n = int(o.of(p)[e.Index()])
		} else {
			for _, t := range p.Child {
				if c, ok := t.(*etree.Element); ok && c.Tag == e.Tag && c.Space == e.Space {
					n++
					if c == e {
						break
					}
				}
			}
		}
		name := e.Tag
		if e.Space == spSDTC {
			name = "sdtc:" + name
		}
		steps = append(steps, name+"["+strconv.Itoa(n)+"]")
	}
	var b strings.Builder
	for i := len(steps) - 1; i >= 0; i-- {
		b.WriteByte('/')
		b.WriteString(steps[i])
	}
	return b.String()
}
