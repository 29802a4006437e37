package mpi

import (
	"errors"
	"math/rand/v2"
	"strings"
)

// EstimateOptions tune EstimateParams.
type EstimateOptions struct {
	Iterations  int    // EM iterations; default 50
	RandomPairs int    // random pairs used for u; default 200,000
	MaxBlock    int    // blocks larger than this are skipped; default 400
	Seed        uint64 // for the random pairs
}

// EstimateParams estimates m and u probabilities from unlabelled records.
// u comes from the agreement frequencies among random pairs (nearly all of
// them non-matches); m from expectation maximisation over the pairs that
// share a blocking key, with u held fixed. Levels never observed keep a small
// floor so that the result validates. It returns the parameters and the
// estimated share of matches among the blocked pairs.
func EstimateParams(records []Record, init Params, opts EstimateOptions) (Params, float64, error) {
	if len(records) < 2 {
		return nil, 0, errors.New("estimate params: need at least two records")
	}
	if err := init.Validate(); err != nil {
		return nil, 0, err
	}
	if opts.Iterations <= 0 {
		opts.Iterations = 50
	}
	if opts.RandomPairs <= 0 {
		opts.RandomPairs = 200000
	}
	if opts.MaxBlock <= 0 {
		opts.MaxBlock = 400
	}
	w := init.weights()
	feats := make([]*features, len(records))
	for i := range records {
		feats[i] = newFeatures(&records[i])
	}
	pattern := func(i, j int) string {
		_, fs := compare(feats[i], feats[j], w)
		var b strings.Builder
		for _, f := range fs {
			b.WriteString(string(f.Level))
			b.WriteByte('|')
		}
		return b.String()
	}

	// u: level frequencies among random pairs.
	r := rand.New(rand.NewPCG(opts.Seed, opts.Seed+1))
	random := map[string]float64{}
	for range opts.RandomPairs {
		i, j := r.IntN(len(records)), r.IntN(len(records))
		if i != j {
			random[pattern(i, j)]++
		}
	}
	// Blocked pairs, each once.
	blocks := map[string][]int{}
	for i, f := range feats {
		for _, k := range blockKeys(f) {
			blocks[k] = append(blocks[k], i)
		}
	}
	seen := map[[2]int]bool{}
	blocked := map[string]float64{}
	for _, ids := range blocks {
		if len(ids) > opts.MaxBlock {
			continue
		}
		for a := 0; a < len(ids); a++ {
			for b := a + 1; b < len(ids); b++ {
				p := [2]int{ids[a], ids[b]}
				if seen[p] {
					continue
				}
				seen[p] = true
				blocked[pattern(p[0], p[1])]++
			}
		}
	}
	if len(blocked) == 0 {
		return nil, 0, errors.New("estimate params: no blocked pairs")
	}

	out := init.Clone()
	freq := func(pats map[string]float64, weight func(string) float64) map[Field]map[Level]float64 {
		res := map[Field]map[Level]float64{}
		tot := map[Field]float64{}
		for pat, n := range pats {
			g := weight(pat) * n
			for i, l := range strings.Split(strings.TrimSuffix(pat, "|"), "|") {
				if Level(l) == LevelMissing {
					continue
				}
				f := fields[i]
				if res[f] == nil {
					res[f] = map[Level]float64{}
				}
				res[f][Level(l)] += g
				tot[f] += g
			}
		}
		for f, m := range res {
			for l := range m {
				m[l] /= tot[f]
			}
		}
		return res
	}
	const floor = 1e-5
	clamp := func(x float64) float64 { return min(max(x, floor), 1-floor) }
	set := func(est map[Field]map[Level]float64, isM bool) {
		for f, levels := range out {
			for l, pr := range levels {
				v := floor
				if est[f] != nil {
					v = clamp(est[f][l])
				}
				if isM {
					pr.M = v
				} else {
					pr.U = v
				}
				levels[l] = pr
			}
		}
	}
	set(freq(random, func(string) float64 { return 1 }), false)

	share := 0.1
	posterior := func(pat string) float64 {
		pm, pu := share, 1-share
		for i, l := range strings.Split(strings.TrimSuffix(pat, "|"), "|") {
			if Level(l) == LevelMissing {
				continue
			}
			pr, ok := out[fields[i]][Level(l)]
			if !ok {
				continue
			}
			pm *= pr.M
			pu *= pr.U
		}
		if pm+pu == 0 {
			return 0
		}
		return pm / (pm + pu)
	}
	for range opts.Iterations {
		total, matched := 0.0, 0.0
		for pat, n := range blocked {
			total += n
			matched += posterior(pat) * n
		}
		set(freq(blocked, posterior), true)
		share = clamp(matched / total)
	}
	if err := out.Validate(); err != nil {
		return nil, 0, err
	}
	return out, share, nil
}
