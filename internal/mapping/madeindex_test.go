package mapping

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"

	"github.com/beevik/etree"
	"github.com/hiegw/hiegw/internal/fhir"
)

// TestDocIndexAnswersAsScans builds random trees and random resources
// made from their nodes (some merged into others as aliases, some renamed
// as rekey does), and asks madeFrom, sameID, refDoc and refsDoc the same
// questions through the index and by scanning.
func TestDocIndexAnswersAsScans(t *testing.T) {
	defer func(n int) { smallMessage = n }(smallMessage)
	r := rand.New(rand.NewSource(7))
	rules := []string{"a", "b", "c"}
	types := []string{"Condition", "Observation"}
	for round := range 200 {
		// a tree of 30 elements
		root := etree.NewElement("root")
		nodes := []*etree.Element{root}
		for i := 1; i < 30; i++ {
			nodes = append(nodes, nodes[r.Intn(len(nodes))].CreateElement(fmt.Sprint("e", i)))
		}
		st := &state{root: root}
		rrs := map[string]*resRule{}
		for _, rule := range rules {
			rrs[rule] = &resRule{name: rule, typ: types[r.Intn(len(types))]}
		}
		ask := func(index bool) []any {
			if index {
				smallMessage = 0
			} else {
				smallMessage = 1 << 30
			}
			var out []any
			name := func(pr *produced) string {
				if pr == nil {
					return "-"
				}
				return fmt.Sprintf("%s %s %p", pr.rule, pr.res.ID(), pr.node)
			}
			for _, n := range nodes {
				st.node = n
				for _, rule := range rules {
					out = append(out, name(st.madeFrom(n, rrs[rule])), st.refDoc(rule), st.refsDoc(rule))
				}
			}
			for id := range 12 {
				for _, typ := range types {
					out = append(out, name(st.sameID(fhir.Resource{"resourceType": typ, "id": fmt.Sprint(id)})))
				}
			}
			return out
		}
		for range 40 {
			rule := rules[r.Intn(len(rules))]
			res := fhir.Resource{"resourceType": rrs[rule].typ, "id": fmt.Sprint(r.Intn(12))}
			pr := produced{rule: rule, seg: -1, res: res, rr: rrs[rule], ref: res.Ref(), node: nodes[r.Intn(len(nodes))]}
			switch r.Intn(6) {
			case 0: // merged into an earlier resource
				if len(st.produced) > 0 {
					st.alias(&st.produced[r.Intn(len(st.produced))], rrs[rule], pr.node)
					continue
				}
			case 1: // an earlier resource renamed, as a conflict does
				if len(st.produced) > 0 {
					ask(true) // the index is made before the rename
					prev := &st.produced[r.Intn(len(st.produced))]
					prev.res["id"] = fmt.Sprint(r.Intn(12))
					st.rekey(prev)
				}
			}
			st.produced = append(st.produced, pr)
			if scanned, indexed := ask(false), ask(true); !reflect.DeepEqual(scanned, indexed) {
				for i := range scanned {
					if !reflect.DeepEqual(scanned[i], indexed[i]) {
						t.Fatalf("round %d, %d resources: answer %d differs:\nscanned %v\nindexed %v", round, len(st.produced), i, scanned[i], indexed[i])
					}
				}
			}
		}
	}
}
