package sftpd

import (
	"path"
	"strings"
	"testing"
)

// FuzzParseLocation checks that any path the parser admits maps to the root,
// one of the three folders, or one plain file name inside one of them.
func FuzzParseLocation(f *testing.F) {
	for _, s := range []string{"/", "/inbox/a.hl7", "/../../etc/passwd", "/inbox/../processed/x", "/inbox/a/b",
		"/.upload/x", "//inbox//x", "/inbox/..", "/inbox/.a.part", "/failed/x\x00y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		l, ok := parseLocation(p)
		if !ok {
			return
		}
		if l.folder == "" {
			if l.name != "" {
				t.Fatalf("%q: name without folder", p)
			}
			return
		}
		if l.folder != folderInbox && l.folder != folderProcessed && l.folder != folderFailed {
			t.Fatalf("%q: folder %q", p, l.folder)
		}
		if l.name != "" && !validName(l.name) {
			t.Fatalf("%q: invalid name %q admitted", p, l.name)
		}
		rel := l.rel()
		if path.Clean(rel) != rel || path.IsAbs(rel) {
			t.Fatalf("%q: relative path %q is not clean", p, rel)
		}
		elems := strings.Split(rel, "/")
		if len(elems) > 2 {
			t.Fatalf("%q: relative path %q is too deep", p, rel)
		}
		for _, e := range elems {
			if e == "." || e == ".." || e == "" {
				t.Fatalf("%q: relative path %q has element %q", p, rel, e)
			}
		}
	})
}
