package mapping

import (
	"slices"

	"github.com/beevik/etree"
)

// madeIndex indexes what the rules have made for a large message or
// document (st.produced, then st.aliases, which only documents have) so
// that ref, refs and produceDoc's lookups do not scan everything made so far
// for each segment or node: on a document of 1,000 results (5,000
// resources) they took 1.1 s, 3,000 results 10 s. Up to smallMessage
// resources are still scanned. The index is extended on each use with what
// was made since.
type madeIndex struct {
	n      [2]int // how many of st.produced and st.aliases are indexed
	byNode map[*etree.Element][]madeRef
	byRule map[string][]madeRef
	// byID lists, ascending, the st.produced entries indexed under each
	// type and id; an entry renamed since (rekey) is listed under its new
	// id too, and sameID checks the id an entry has now.
	byID map[typeID][]int
}

// madeRef names an entry of st.produced (list 0) or st.aliases (list 1);
// the scans met them in that order, which cmp gives.
type madeRef struct {
	list uint8
	i    int
}

func (a madeRef) cmp(b madeRef) int {
	if a.list != b.list {
		return int(a.list) - int(b.list)
	}
	return a.i - b.i
}

type typeID struct{ typ, id string }

// made returns the entry r names.
func (st *state) made(r madeRef) *produced {
	if r.list == 0 {
		return &st.produced[r.i]
	}
	return &st.aliases[r.i]
}

// madeIndex returns the index brought up to date, or nil when few enough
// resources were made to scan them.
func (st *state) madeIndex() *madeIndex {
	if len(st.produced)+len(st.aliases) <= smallMessage {
		return nil
	}
	x := st.mx
	if x == nil {
		x = &madeIndex{byNode: map[*etree.Element][]madeRef{}, byRule: map[string][]madeRef{}, byID: map[typeID][]int{}}
		st.mx = x
	}
	for list, entries := range st.docProduced() {
		for ; x.n[list] < len(entries); x.n[list]++ {
			i := x.n[list]
			pr, r := &entries[i], madeRef{uint8(list), i}
			x.byNode[pr.node] = append(x.byNode[pr.node], r)
			x.byRule[pr.rule] = append(x.byRule[pr.rule], r)
			if list == 0 {
				k := typeID{pr.res.Type(), pr.res.ID()}
				x.byID[k] = append(x.byID[k], i)
			}
		}
	}
	return x
}

// reindexID lists pr, an entry of st.produced whose id has just changed
// (rekey: two entries with the same source keys), under its new id.
func (st *state) reindexID(pr *produced) {
	x := st.mx
	if x == nil {
		return
	}
	for i := range x.n[0] {
		if &st.produced[i] == pr {
			k := typeID{pr.res.Type(), pr.res.ID()}
			if at, found := slices.BinarySearch(x.byID[k], i); !found {
				x.byID[k] = slices.Insert(x.byID[k], at, i)
			}
			return
		}
	}
}

// sameIDIndexed is sameID through the index.
func (st *state) sameIDIndexed(x *madeIndex, typ, id string) *produced {
	for _, i := range x.byID[typeID{typ, id}] {
		if pr := &st.produced[i]; pr.res.ID() == id && pr.res.Type() == typ {
			return pr
		}
	}
	return nil
}

// firstAt returns the first entry (in scan order) of refs that ok accepts.
func (st *state) firstAt(refs []madeRef, ok func(*produced) bool) *produced {
	var best madeRef
	found := false
	for _, r := range refs {
		if (!found || r.cmp(best) < 0) && ok(st.made(r)) {
			best, found = r, true
		}
	}
	if !found {
		return nil
	}
	return st.made(best)
}

// within lists, in scan order, the entries of rule made from node or from
// nodes inside it.
func (x *madeIndex) within(st *state, rule string, node *etree.Element) []madeRef {
	var out []madeRef
	if node == st.root {
		out = slices.Clone(x.byRule[rule])
		slices.SortFunc(out, madeRef.cmp)
		return out
	}
	var walk func(e *etree.Element)
	walk = func(e *etree.Element) {
		for _, r := range x.byNode[e] {
			if st.made(r).rule == rule {
				out = append(out, r)
			}
		}
		for _, t := range e.Child {
			if c, ok := t.(*etree.Element); ok {
				walk(c)
			}
		}
	}
	walk(node)
	slices.SortFunc(out, madeRef.cmp)
	return out
}
