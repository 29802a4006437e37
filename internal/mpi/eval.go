package mpi

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// EvalOptions tune Eval.
type EvalOptions struct {
	// Config is the matcher configuration; nil means DefaultConfig, the
	// settings the gateway uses.
	Config *Config
	// Scale, when positive, adds a scale check: that many synthetic patients
	// are indexed, then Queries records are resolved against them on one core.
	Scale   int
	Queries int    // default 10,000
	Seed    uint64 // seed of the synthetic population
	// Estimate replaces the m and u probabilities by estimates from the
	// evaluated files themselves (EstimateParams) before matching. This tunes
	// the weights to the data; the gateway's figures are those without it.
	Estimate bool
}

// Eval scores the matcher on FEBRL CSV files and prints one line per run.
// One file is deduplicated within itself; two files are linked, the second
// against an index of the first. Pairwise precision, recall and F1 follow the
// benchmark's README; records sent to review count as not linked.
func Eval(ctx context.Context, w io.Writer, files []string, opts EvalOptions) error {
	cfg := DefaultConfig()
	if opts.Config != nil {
		cfg = *opts.Config
	}
	switch len(files) {
	case 0:
		if opts.Scale <= 0 {
			return errors.New("eval: no files and no scale check")
		}
	case 1, 2:
		if opts.Estimate {
			var all []Record
			for _, f := range files {
				recs, _, err := LoadFEBRL(f)
				if err != nil {
					return fmt.Errorf("eval: %w", err)
				}
				all = append(all, recs...)
			}
			p, share, err := EstimateParams(all, cfg.Params, EstimateOptions{Seed: opts.Seed, MaxBlock: cfg.MaxBlock})
			if err != nil {
				return fmt.Errorf("eval: %w", err)
			}
			cfg.Params = p
			fmt.Fprintf(w, "estimated parameters: match_share_of_blocked_pairs=%.4f\n", share)
		}
		res, err := evalFiles(ctx, files, cfg)
		if err != nil {
			return fmt.Errorf("eval: %w", err)
		}
		fmt.Fprintln(w, res)
	default:
		return errors.New("eval: give one file to deduplicate or two to link")
	}
	if opts.Scale > 0 {
		q := opts.Queries
		if q <= 0 {
			q = 10000
		}
		res, err := ScaleCheck(ctx, cfg, opts.Scale, q, opts.Seed)
		if err != nil {
			return fmt.Errorf("eval: %w", err)
		}
		fmt.Fprintln(w, res)
	}
	return nil
}

// EvalResult is the outcome of one accuracy run.
type EvalResult struct {
	Name                   string
	Records                int
	TruePairs, Predicted   int64
	TP                     int64
	Precision, Recall, F1  float64
	Reviews                int
	RecordsPerSecond       float64
	RecordsPerCPUSecond    float64
	PeakHeapMB, SysMB      float64
	LinkedByScore, Created int
}

func (r EvalResult) String() string {
	return fmt.Sprintf("%s records=%d precision=%.4f recall=%.4f f1=%.4f tp=%d predicted=%d true=%d review=%d (%.2f%%) records_per_s=%.0f records_per_cpu_s=%.0f peak_heap_mb=%.1f sys_mb=%.1f",
		r.Name, r.Records, r.Precision, r.Recall, r.F1, r.TP, r.Predicted, r.TruePairs,
		r.Reviews, 100*float64(r.Reviews)/float64(max(r.Records, 1)), r.RecordsPerSecond, r.RecordsPerCPUSecond, r.PeakHeapMB, r.SysMB)
}

// febrlRecord is a benchmark record with its true group.
type febrlRecord struct {
	rec   Record
	group int
}

// LoadFEBRL reads a FEBRL CSV file into records whose authority is the file's
// base name and whose MRN is rec_id; the returned groups hold the true
// identity number of each record.
func LoadFEBRL(path string) ([]Record, []int, error) {
	rs, err := loadFEBRL(path)
	if err != nil {
		return nil, nil, err
	}
	recs := make([]Record, len(rs))
	groups := make([]int, len(rs))
	for i, r := range rs {
		recs[i], groups[i] = r.rec, r.group
	}
	return recs, groups, nil
}

func loadFEBRL(path string) ([]febrlRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load febrl: %w", err)
	}
	defer f.Close()
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	cr := csv.NewReader(f)
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = false
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("load febrl %s: header: %w", name, err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.TrimSpace(h)] = i
	}
	for _, c := range []string{"rec_id", "given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode", "state", "date_of_birth", "soc_sec_id"} {
		if _, ok := col[c]; !ok {
			return nil, fmt.Errorf("load febrl %s: header: no column %s", name, c)
		}
	}
	var out []febrlRecord
	for line := 2; ; line++ {
		row, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("load febrl %s: line %d: %w", name, line, err)
		}
		get := func(c string) string { return strings.TrimSpace(row[col[c]]) }
		id := get("rec_id")
		parts := strings.Split(id, "-")
		if len(parts) < 3 || parts[0] != "rec" {
			return nil, fmt.Errorf("load febrl %s: line %d: rec_id is not rec-N-org or rec-N-dup-K", name, line)
		}
		g, err := strconv.Atoi(parts[1])
		if err != nil {
			return nil, fmt.Errorf("load febrl %s: line %d: rec_id number: %w", name, line, err)
		}
		line1 := strings.TrimSpace(get("street_number") + " " + get("address_1"))
		out = append(out, febrlRecord{group: g, rec: Record{
			Sender: name, Authority: name, MRN: id,
			Given: get("given_name"), Family: get("surname"),
			AddressLines: []string{line1, get("address_2")},
			City:         get("suburb"), Postcode: get("postcode"), State: get("state"),
			BirthDate: get("date_of_birth"), NationalID: get("soc_sec_id"),
		}})
	}
	return out, nil
}

// memPeak samples the heap to find its peak during a run.
type memPeak struct{ heap, sys uint64 }

func (m *memPeak) sample() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.heap = max(m.heap, s.HeapAlloc)
	m.sys = max(m.sys, s.Sys)
}

func evalFiles(ctx context.Context, files []string, cfg Config) (EvalResult, error) {
	sets := make([][]febrlRecord, len(files))
	for i, f := range files {
		rs, err := loadFEBRL(f)
		if err != nil {
			return EvalResult{}, err
		}
		sets[i] = rs
	}
	st := NewMemory()
	ix, err := New(st, cfg)
	if err != nil {
		return EvalResult{}, err
	}
	var res EvalResult
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	res.Name = "file=" + strings.Join(names, "+")
	var peak memPeak
	peak.sample()
	cpu0 := cpuTime()
	start := time.Now()
	n := 0
	for _, set := range sets {
		for _, r := range set {
			d, err := ix.Resolve(ctx, r.rec)
			if err != nil {
				return EvalResult{}, err
			}
			n++
			switch d.Outcome {
			case Review:
				res.Reviews++
			case LinkedByScore:
				res.LinkedByScore++
			case NewPatient:
				res.Created++
			}
			if n%500 == 0 {
				peak.sample()
			}
		}
	}
	elapsed := time.Since(start)
	if cpu := cpuTime() - cpu0; cpu > 0 {
		res.RecordsPerCPUSecond = float64(n) / cpu.Seconds()
	}
	peak.sample()
	res.Records = n
	res.RecordsPerSecond = float64(n) / elapsed.Seconds()
	res.PeakHeapMB = float64(peak.heap) / (1 << 20)
	res.SysMB = float64(peak.sys) / (1 << 20)

	// Final clusters.
	type member struct{ set, group int }
	clusters := map[string][]member{}
	for si, set := range sets {
		for _, r := range set {
			e, ok, err := st.Get(ctx, r.rec.Key())
			if err != nil {
				return EvalResult{}, err
			}
			if !ok {
				return EvalResult{}, errors.New("record missing after resolve")
			}
			clusters[e.EnterpriseID] = append(clusters[e.EnterpriseID], member{si, r.group})
		}
	}
	if len(sets) == 1 {
		sizes := map[int]int64{}
		for _, r := range sets[0] {
			sizes[r.group]++
		}
		for _, s := range sizes {
			res.TruePairs += s * (s - 1) / 2
		}
		for _, ms := range clusters {
			n := int64(len(ms))
			res.Predicted += n * (n - 1) / 2
			byGroup := map[int]int64{}
			for _, m := range ms {
				byGroup[m.group]++
			}
			for _, c := range byGroup {
				res.TP += c * (c - 1) / 2
			}
		}
	} else {
		ca, cb := map[int]int64{}, map[int]int64{}
		for _, r := range sets[0] {
			ca[r.group]++
		}
		for _, r := range sets[1] {
			cb[r.group]++
		}
		for g, a := range ca {
			res.TruePairs += a * cb[g]
		}
		for _, ms := range clusters {
			var na, nb int64
			ga, gb := map[int]int64{}, map[int]int64{}
			for _, m := range ms {
				if m.set == 0 {
					na++
					ga[m.group]++
				} else {
					nb++
					gb[m.group]++
				}
			}
			res.Predicted += na * nb
			for g, a := range ga {
				res.TP += a * gb[g]
			}
		}
	}
	res.Precision = ratio(res.TP, res.Predicted)
	res.Recall = ratio(res.TP, res.TruePairs)
	if res.Precision+res.Recall > 0 {
		res.F1 = 2 * res.Precision * res.Recall / (res.Precision + res.Recall)
	}
	return res, nil
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

// ScaleResult is the outcome of a scale check.
type ScaleResult struct {
	Patients, Queries             int
	BuildPerSecond                float64
	RecordsPerSecond              float64
	RecordsPerCPUSecond           float64 // per second of process CPU time: fairer on a shared machine
	Linked, Reviews, Created      int
	CorrectLinks, WrongLinks      int
	MissedDuplicates              int
	PeakHeapMB, SysMB, LiveHeapMB float64
	CandidatesPerQuery            float64
}

func (r ScaleResult) String() string {
	return fmt.Sprintf("scale patients=%d queries=%d records_per_s=%.0f records_per_cpu_s=%.0f build_per_s=%.0f candidates_per_query=%.1f linked=%d correct=%d wrong=%d missed=%d review=%d new=%d peak_heap_mb=%.1f live_heap_mb=%.1f sys_mb=%.1f",
		r.Patients, r.Queries, r.RecordsPerSecond, r.RecordsPerCPUSecond, r.BuildPerSecond, r.CandidatesPerQuery, r.Linked, r.CorrectLinks, r.WrongLinks,
		r.MissedDuplicates, r.Reviews, r.Created, r.PeakHeapMB, r.LiveHeapMB, r.SysMB)
}

// ScaleCheck indexes n synthetic patients, then resolves q query records
// (half of them altered copies of indexed patients, half new people) on one
// core (GOMAXPROCS 1 while it runs), measuring throughput and heap.
func ScaleCheck(ctx context.Context, cfg Config, n, q int, seed uint64) (ScaleResult, error) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	runtime.GC()
	g := newGenerator(seed)
	st := NewMemory()
	ix, err := New(st, cfg)
	if err != nil {
		return ScaleResult{}, err
	}
	res := ScaleResult{Patients: n, Queries: q}
	var peak memPeak
	people := make([]Record, n)
	start := time.Now()
	for i := range people {
		people[i] = g.person("base", i)
		if _, err := ix.Resolve(ctx, people[i]); err != nil {
			return ScaleResult{}, err
		}
		if i%10000 == 0 {
			peak.sample()
		}
	}
	res.BuildPerSecond = float64(n) / time.Since(start).Seconds()
	queries := make([]Record, q)
	truth := make([]int, q) // index of the true patient, or -1
	for i := range queries {
		if i%2 == 0 {
			j := g.r.IntN(n)
			queries[i] = g.variant(people[j], "query", i)
			truth[i] = j
		} else {
			queries[i] = g.person("query", i)
			truth[i] = -1
		}
	}
	compared := 0
	got := make([]Decision, q)
	runtime.GC()
	cpu0 := cpuTime()
	start = time.Now()
	for i, r := range queries {
		d, err := ix.Resolve(ctx, r)
		if err != nil {
			return ScaleResult{}, err
		}
		compared += d.Compared
		got[i] = Decision{EnterpriseID: d.EnterpriseID, Outcome: d.Outcome}
		if i%2000 == 0 {
			peak.sample()
		}
	}
	elapsed := time.Since(start)
	if cpu := cpuTime() - cpu0; cpu > 0 {
		res.RecordsPerCPUSecond = float64(q) / cpu.Seconds()
	}
	for i, d := range got {
		switch d.Outcome {
		case LinkedByScore, LinkedByIdentifier:
			res.Linked++
			// Correct when it joined the true person's enterprise patient
			// (possibly through an earlier altered copy of them).
			ok := false
			if truth[i] >= 0 {
				e, found, err := st.Get(ctx, people[truth[i]].Key())
				if err != nil {
					return ScaleResult{}, err
				}
				ok = found && e.EnterpriseID == d.EnterpriseID
			}
			if ok {
				res.CorrectLinks++
			} else {
				res.WrongLinks++
			}
		case Review:
			res.Reviews++
		case NewPatient:
			res.Created++
			if truth[i] >= 0 {
				res.MissedDuplicates++
			}
		}
	}
	res.RecordsPerSecond = float64(q) / elapsed.Seconds()
	res.CandidatesPerQuery = float64(compared) / float64(max(q, 1))
	peak.sample()
	res.PeakHeapMB = float64(peak.heap) / (1 << 20)
	res.SysMB = float64(peak.sys) / (1 << 20)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.LiveHeapMB = float64(ms.HeapAlloc) / (1 << 20)
	runtime.KeepAlive(ix)
	return res, nil
}

// generator makes a deterministic synthetic population with a skewed
// (Zipf) distribution of names, so that common names make large blocks.
type generator struct {
	r                        *rand.Rand
	given, family, street    []string
	city                     []string
	zGiven, zFamily, zStreet *rand.Zipf
}

var syllables = strings.Fields("an bel car da el fer gar hol is jon kel lin mar nor ol per quin ros sal ton ul ver wil yen zan bri cha dor eve fin gus hel ira jas kor lu mei nat ori pa ro sta tre vi wen")

func newGenerator(seed uint64) *generator {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	word := func(parts int) string {
		var b strings.Builder
		for range parts {
			b.WriteString(syllables[r.IntN(len(syllables))])
		}
		return b.String()
	}
	list := func(n, minParts, maxParts int) []string {
		seen := map[string]bool{}
		var out []string
		for len(out) < n {
			w := word(minParts + r.IntN(maxParts-minParts+1))
			if !seen[w] {
				seen[w] = true
				out = append(out, w)
			}
		}
		return out
	}
	g := &generator{r: r}
	g.given = list(3000, 2, 3)
	g.family = list(20000, 2, 4)
	g.street = list(5000, 2, 3)
	g.city = list(800, 2, 3)
	g.zGiven = rand.NewZipf(r, 1.1, 20, uint64(len(g.given)-1))
	g.zFamily = rand.NewZipf(r, 1.05, 50, uint64(len(g.family)-1))
	g.zStreet = rand.NewZipf(r, 1.05, 50, uint64(len(g.street)-1))
	return g
}

func (g *generator) person(authority string, i int) Record {
	r := g.r
	ci := r.IntN(len(g.city))
	sex := "F"
	if r.IntN(2) == 0 {
		sex = "M"
	}
	return Record{
		Sender: authority, Authority: authority, MRN: fmt.Sprintf("%s-%d", authority, i),
		Given:        g.given[g.zGiven.Uint64()],
		Family:       g.family[g.zFamily.Uint64()],
		BirthDate:    fmt.Sprintf("%04d%02d%02d", 1920+r.IntN(100), 1+r.IntN(12), 1+r.IntN(28)),
		Sex:          sex,
		AddressLines: []string{fmt.Sprintf("%d %s street", 1+r.IntN(300), g.street[g.zStreet.Uint64()])},
		City:         g.city[ci],
		Postcode:     fmt.Sprintf("%04d", 1000+ci*10+r.IntN(10)),
		State:        []string{"nsw", "vic", "qld", "wa", "sa", "tas"}[ci%6],
		Phone:        fmt.Sprintf("04%08d", r.IntN(100000000)),
		NationalID:   fmt.Sprintf("%09d", r.IntN(1000000000)),
	}
}

// variant returns p as another sender would record it: new key, and one or
// two clerical changes.
func (g *generator) variant(p Record, authority string, i int) Record {
	r := g.r
	v := p
	v.Sender, v.Authority, v.MRN = authority, authority, fmt.Sprintf("%s-%d", authority, i)
	for range 1 + r.IntN(2) {
		switch r.IntN(6) {
		case 0:
			v.Given = typo(r, v.Given)
		case 1:
			v.Family = typo(r, v.Family)
		case 2:
			v.BirthDate = typo(r, v.BirthDate)
		case 3:
			v.AddressLines = []string{fmt.Sprintf("%d %s street", 1+r.IntN(300), g.street[g.zStreet.Uint64()])}
			v.Postcode = fmt.Sprintf("%04d", 1000+r.IntN(8000))
		case 4:
			v.Phone = ""
		case 5:
			v.NationalID = typo(r, v.NationalID)
		}
	}
	return v
}

// typo changes one character of s to a neighbouring letter or digit.
func typo(r *rand.Rand, s string) string {
	if s == "" {
		return s
	}
	b := []byte(s)
	i := r.IntN(len(b))
	switch c := b[i]; {
	case c >= '0' && c <= '9':
		b[i] = '0' + (c-'0'+1+byte(r.IntN(8)))%10
	default:
		b[i] = 'a' + byte(r.IntN(26))
	}
	return string(b)
}
