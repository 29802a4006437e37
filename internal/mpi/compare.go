package mpi

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/adrg/strutil/metrics"
)

// Field names a compared attribute of a record.
type Field string

// Compared fields.
const (
	FieldGiven        Field = "given"
	FieldFamily       Field = "family"
	FieldMiddle       Field = "middle"
	FieldBirthDate    Field = "birth_date"
	FieldSex          Field = "sex"
	FieldNationalID   Field = "national_id"
	FieldHouseNumber  Field = "house_number"
	FieldStreet       Field = "street"
	FieldAddressExtra Field = "address_extra"
	FieldCity         Field = "city"
	FieldState        Field = "state"
	FieldPostcode     Field = "postcode"
	FieldPhone        Field = "phone"
)

// fields is the order in which fields are compared and explained.
var fields = [numFields]Field{
	FieldGiven, FieldFamily, FieldMiddle, FieldBirthDate, FieldSex, FieldNationalID,
	FieldHouseNumber, FieldStreet, FieldAddressExtra, FieldCity, FieldState, FieldPostcode, FieldPhone,
}

// Level is how far two values of a field agree.
type Level string

// Agreement levels. Not every field uses every level; LevelMissing (a value
// absent on either side) always weighs 0.
const (
	LevelExact    Level = "exact"
	LevelNickname Level = "nickname" // known nickname of the other (bill, william)
	LevelToken    Level = "token"    // one name is a part of the other (smith, smith-jones)
	LevelPhonetic Level = "phonetic" // same NYSIIS code
	LevelSimilar  Level = "similar"  // Jaro-Winkler at or above the high cut
	LevelLoose    Level = "loose"    // Jaro-Winkler at or above the low cut
	LevelSwapped  Level = "swapped"  // day and month exchanged
	LevelTypo     Level = "typo"     // one edit: one character changed, added, dropped or two neighbours exchanged
	LevelPartial  Level = "partial"  // part agrees (two of year/month/day, initial, last seven phone digits)
	LevelDisagree Level = "disagree" // present on both sides and different
	LevelMissing  Level = "missing"  // absent on at least one side; no evidence
)

// Jaro-Winkler cuts for the similar and loose levels.
const (
	jwHigh = 0.92
	jwLow  = 0.85
)

var jaroWinkler = &metrics.JaroWinkler{CaseSensitive: true}

// Probability is the chance of an agreement level among true matches (M) and
// among non-matches (U). The level's weight is log2(M/U).
type Probability struct {
	M, U float64
}

// Params holds, per field, the probabilities of each agreement level the
// field's comparator can produce. Levels a field does not list weigh 0.
type Params map[Field]map[Level]Probability

// DefaultParams returns the m and u probabilities used unless configured
// otherwise. They describe a regional population with clerical errors: values
// agree exactly for most true matches, and a random pair rarely shares a birth
// date or national id.
func DefaultParams() Params {
	return Params{
		FieldGiven: {
			LevelExact: {0.86, 0.004}, LevelNickname: {0.02, 0.0005}, LevelPhonetic: {0.03, 0.004},
			LevelSimilar: {0.04, 0.004}, LevelLoose: {0.02, 0.02}, LevelDisagree: {0.03, 0.9675},
		},
		FieldFamily: {
			LevelExact: {0.86, 0.002}, LevelToken: {0.01, 0.0005}, LevelPhonetic: {0.03, 0.003},
			LevelSimilar: {0.04, 0.003}, LevelLoose: {0.02, 0.02}, LevelDisagree: {0.04, 0.9715},
		},
		FieldMiddle: {
			LevelExact: {0.7, 0.01}, LevelPartial: {0.2, 0.05}, LevelDisagree: {0.1, 0.94},
		},
		FieldBirthDate: {
			LevelExact: {0.86, 0.00005}, LevelSwapped: {0.01, 0.00002}, LevelTypo: {0.06, 0.0008},
			LevelPartial: {0.03, 0.002}, LevelDisagree: {0.04, 0.99713},
		},
		FieldSex: {
			LevelExact: {0.98, 0.5}, LevelDisagree: {0.02, 0.5},
		},
		FieldNationalID: {
			LevelExact: {0.86, 0.00002}, LevelTypo: {0.07, 0.0005}, LevelDisagree: {0.07, 0.99948},
		},
		FieldHouseNumber: {
			LevelExact: {0.85, 0.01}, LevelTypo: {0.05, 0.03}, LevelDisagree: {0.10, 0.96},
		},
		FieldStreet: {
			LevelExact: {0.82, 0.001}, LevelSimilar: {0.08, 0.002}, LevelLoose: {0.03, 0.01}, LevelDisagree: {0.07, 0.987},
		},
		FieldAddressExtra: {
			LevelExact: {0.8, 0.01}, LevelSimilar: {0.08, 0.01}, LevelDisagree: {0.12, 0.98},
		},
		FieldCity: {
			LevelExact: {0.84, 0.003}, LevelSimilar: {0.08, 0.004}, LevelDisagree: {0.08, 0.993},
		},
		FieldState: {
			LevelExact: {0.93, 0.3}, LevelDisagree: {0.07, 0.7},
		},
		FieldPostcode: {
			LevelExact: {0.84, 0.002}, LevelTypo: {0.08, 0.02}, LevelDisagree: {0.08, 0.978},
		},
		FieldPhone: {
			LevelExact: {0.8, 0.0001}, LevelTypo: {0.05, 0.0005}, LevelPartial: {0.03, 0.001}, LevelDisagree: {0.12, 0.9984},
		},
	}
}

// Validate checks that every probability lies strictly between 0 and 1 and
// that every field has a disagreement level.
func (p Params) Validate() error {
	for f, levels := range p {
		if fieldIndex(f) < 0 {
			return fmt.Errorf("params: unknown field %q", f)
		}
		if _, ok := levels[LevelDisagree]; !ok {
			return fmt.Errorf("params: field %s: no %s level", f, LevelDisagree)
		}
		for l, pr := range levels {
			if levelIndex(l) < 0 {
				return fmt.Errorf("params: field %s: unknown level %q", f, l)
			}
			if !(pr.M > 0 && pr.M < 1) || !(pr.U > 0 && pr.U < 1) {
				return fmt.Errorf("params: field %s level %s: m and u must lie strictly between 0 and 1", f, l)
			}
		}
	}
	return nil
}

// Clone returns a deep copy of p.
func (p Params) Clone() Params {
	out := make(Params, len(p))
	for f, levels := range p {
		m := make(map[Level]Probability, len(levels))
		for l, pr := range levels {
			m[l] = pr
		}
		out[f] = m
	}
	return out
}

// levels lists every agreement level; its order indexes weights.
var levels = []Level{
	LevelExact, LevelNickname, LevelToken, LevelPhonetic, LevelSimilar, LevelLoose,
	LevelSwapped, LevelTypo, LevelPartial, LevelDisagree,
}

func levelIndex(l Level) int {
	switch l {
	case LevelExact:
		return 0
	case LevelNickname:
		return 1
	case LevelToken:
		return 2
	case LevelPhonetic:
		return 3
	case LevelSimilar:
		return 4
	case LevelLoose:
		return 5
	case LevelSwapped:
		return 6
	case LevelTypo:
		return 7
	case LevelPartial:
		return 8
	case LevelDisagree:
		return 9
	}
	return -1
}

func fieldIndex(f Field) int {
	for i, x := range fields {
		if x == f {
			return i
		}
	}
	return -1
}

// weights is Params turned into log2(m/u) per field and level, in arrays
// indexed like fields and levels (a level a field does not list weighs 0).
type weights [][]float64

func (p Params) weights() weights {
	w := make(weights, len(fields))
	for i, f := range fields {
		w[i] = make([]float64, len(levels))
		for l, pr := range p[f] {
			if j := levelIndex(l); j >= 0 {
				w[i][j] = math.Log2(pr.M / pr.U)
			}
		}
	}
	return w
}

func (w weights) of(f Field, l Level) float64 {
	return w.at(fieldIndex(f), l)
}

// at is the weight of level l of the i-th field.
func (w weights) at(i int, l Level) float64 {
	j := levelIndex(l)
	if i < 0 || j < 0 {
		return 0
	}
	return w[i][j]
}

// FieldScore is one field's part of a comparison.
type FieldScore struct {
	Field  Field   `json:"field"`
	Level  Level   `json:"level"`
	Weight float64 `json:"weight"`
	Note   string  `json:"note,omitempty"`
}

// Comparison is the scored comparison of a record with one candidate.
type Comparison struct {
	Candidate    Key          `json:"candidate"`
	EnterpriseID string       `json:"enterprise_id"`
	Score        float64      `json:"score"`
	Fields       []FieldScore `json:"fields"`
}

// String renders the comparison for an operator, without any field values.
func (c Comparison) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "score %.2f vs %s:", c.Score, c.Candidate)
	for _, f := range c.Fields {
		if f.Level == LevelMissing {
			continue
		}
		fmt.Fprintf(&b, " %s=%s(%+.2f)", f.Field, f.Level, f.Weight)
		if f.Note != "" {
			fmt.Fprintf(&b, "[%s]", f.Note)
		}
	}
	return b.String()
}

// features are the normalised values of a record used for comparing and
// blocking, computed once per record.
type features struct {
	given, family, middle []string // name tokens
	givenS, familyS       string   // tokens joined without spaces
	givenCode, familyCode string   // NYSIIS of the joined tokens
	dob                   string   // YYYYMMDD or ""
	sex                   byte
	nid                   string
	house, street, extra  string
	city, state, postcode string
	phone                 string
}

func newFeatures(r *Record) *features {
	f := &features{
		given:  nameTokens(r.Given),
		family: nameTokens(r.Family),
		middle: nameTokens(r.Middle),
	}
	if len(f.given) > 1 && len(f.middle) == 0 {
		f.middle = f.given[1:]
		f.given = f.given[:1]
	}
	f.givenS = strings.Join(f.given, "")
	f.familyS = strings.Join(f.family, "")
	f.givenCode = nysiis(f.givenS)
	f.familyCode = nysiis(f.familyS)
	f.dob = normDate(r.BirthDate)
	f.sex = normSex(r.Sex)
	f.nid = alnum(r.NationalID)
	f.house, f.street, f.extra = splitAddress(r.AddressLines)
	f.city = strings.Join(addrTokens(r.City), " ")
	f.state = alnum(r.State)
	f.postcode = alnum(r.Postcode)
	f.phone = normPhone(r.Phone)
	return f
}

// FieldLocationCap is the pseudo-field that explains the location cap.
const FieldLocationCap Field = "location_cap"

// LevelCapped marks the location cap's correction.
const LevelCapped Level = "capped"

// location reports whether f describes where a person lives rather than who
// they are. Household members share all of these, and they are strongly
// correlated with each other, so their summed weight is capped.
func location(f Field) bool {
	switch f {
	case FieldHouseNumber, FieldStreet, FieldAddressExtra, FieldCity, FieldState, FieldPostcode, FieldPhone:
		return true
	}
	return false
}

// scorer compares feature sets.
type scorer struct {
	w           weights
	locationCap float64 // <= 0: no cap
}

// levelVec holds the agreement level of each field, indexed like fields.
type levelVec struct {
	l       [numFields]Level
	swapped bool // given and family compared crosswise
}

const numFields = 13

// compare scores a against b, with the explanation.
func (s scorer) compare(a, b *features) (float64, []FieldScore) {
	v := compareLevels(a, b, s.w)
	return s.total(&v), s.explain(&v)
}

// total is the score of v: the sum of its weights, location capped.
func (s scorer) total(v *levelVec) float64 {
	total, loc := 0.0, 0.0
	for i, l := range v.l {
		wt := s.w.at(i, l)
		total += wt
		if location(fields[i]) {
			loc += wt
		}
	}
	if s.locationCap > 0 && loc > s.locationCap {
		total += s.locationCap - loc
	}
	return total
}

// explain lists each field's level and weight, plus the location cap's
// correction when it applied; the weights sum to total(v).
func (s scorer) explain(v *levelVec) []FieldScore {
	out := make([]FieldScore, 0, numFields+1)
	loc := 0.0
	for i, l := range v.l {
		fs := FieldScore{Field: fields[i], Level: l, Weight: s.w.at(i, l)}
		if v.swapped && (fs.Field == FieldGiven || fs.Field == FieldFamily) {
			fs.Note = "given and family exchanged"
		}
		if location(fs.Field) {
			loc += fs.Weight
		}
		out = append(out, fs)
	}
	if s.locationCap > 0 && loc > s.locationCap {
		out = append(out, FieldScore{Field: FieldLocationCap, Level: LevelCapped, Weight: s.locationCap - loc, Note: "address and phone evidence capped"})
	}
	return out
}

// compare scores a against b with weights w, without the location cap.
func compare(a, b *features, w weights) (float64, []FieldScore) {
	v := compareLevels(a, b, w)
	fs := scorer{w: w}.explain(&v)
	total := 0.0
	for _, f := range fs {
		total += f.Weight
	}
	return total, fs
}

// compareLevels compares every field of a and b.
func compareLevels(a, b *features, w weights) levelVec {
	var v levelVec
	// Names, also crossed in case given and family were entered the other way round.
	gl := compareGiven(a.givenS, b.givenS, a.givenCode, b.givenCode)
	fl := compareFamily(a, b, a.familyS, b.familyS, a.familyCode, b.familyCode)
	if weak(gl) || weak(fl) {
		xg := compareGiven(a.givenS, b.familyS, a.givenCode, b.familyCode)
		xf := compareGiven(a.familyS, b.givenS, a.familyCode, b.givenCode)
		if strong(xg) && strong(xf) && w.at(0, xg)+w.at(1, xf) > w.at(0, gl)+w.at(1, fl) {
			gl, fl, v.swapped = xg, xf, true
		}
	}
	v.l = [numFields]Level{
		gl, fl,
		compareMiddle(a.middle, b.middle),
		compareDate(a.dob, b.dob),
		compareSex(a.sex, b.sex),
		compareCode(a.nid, b.nid),
		compareCode(a.house, b.house),
		compareText(a.street, b.street, true),
		compareText(a.extra, b.extra, false),
		compareText(a.city, b.city, false),
		compareExact(a.state, b.state),
		compareCode(a.postcode, b.postcode),
		comparePhone(a.phone, b.phone),
	}
	return v
}

func weak(l Level) bool {
	return l == LevelDisagree || l == LevelLoose
}

func strong(l Level) bool {
	switch l {
	case LevelExact, LevelNickname, LevelPhonetic, LevelSimilar:
		return true
	}
	return false
}

func compareGiven(a, b, ca, cb string) Level {
	switch {
	case a == "" || b == "":
		return LevelMissing
	case a == b:
		return LevelExact
	case isNickname(a, b):
		return LevelNickname
	case ca == cb:
		return LevelPhonetic
	}
	return jwLevel(a, b)
}

func compareFamily(fa, fb *features, a, b, ca, cb string) Level {
	switch {
	case a == "" || b == "":
		return LevelMissing
	case a == b:
		return LevelExact
	case sharesToken(fa.family, fb.family):
		return LevelToken
	case ca == cb:
		return LevelPhonetic
	}
	return jwLevel(a, b)
}

// sharesToken reports whether two multi-part names share a part of at least
// three letters (smith-jones, smith).
func sharesToken(a, b []string) bool {
	if len(a) < 2 && len(b) < 2 {
		return false
	}
	for _, x := range a {
		for _, y := range b {
			if x == y && len(x) >= 3 {
				return true
			}
		}
	}
	return false
}

func jwLevel(a, b string) Level {
	s := jaroWinkler.Compare(a, b)
	switch {
	case s >= jwHigh:
		return LevelSimilar
	case s >= jwLow:
		return LevelLoose
	}
	return LevelDisagree
}

func compareMiddle(a, b []string) Level {
	if len(a) == 0 || len(b) == 0 {
		return LevelMissing
	}
	x, y := strings.Join(a, ""), strings.Join(b, "")
	switch {
	case x == y:
		return LevelExact
	case x[0] == y[0] && (len(a[0]) == 1 || len(b[0]) == 1):
		return LevelPartial
	}
	return LevelDisagree
}

// compareDate compares two YYYYMMDD dates.
func compareDate(a, b string) Level {
	switch {
	case a == "" || b == "":
		return LevelMissing
	case a == b:
		return LevelExact
	case a[:4] == b[:4] && a[4:6] == b[6:8] && a[6:8] == b[4:6]:
		return LevelSwapped
	case oneEdit(a, b):
		return LevelTypo
	}
	same := 0
	if a[:4] == b[:4] {
		same++
	}
	if a[4:6] == b[4:6] {
		same++
	}
	if a[6:8] == b[6:8] {
		same++
	}
	if same >= 2 {
		return LevelPartial
	}
	return LevelDisagree
}

func compareSex(a, b byte) Level {
	switch {
	case a == 0 || b == 0:
		return LevelMissing
	case a == b:
		return LevelExact
	}
	return LevelDisagree
}

// compareCode compares identifiers and numbers where one edit is a typo.
func compareCode(a, b string) Level {
	switch {
	case a == "" || b == "":
		return LevelMissing
	case a == b:
		return LevelExact
	case oneEdit(a, b):
		return LevelTypo
	}
	return LevelDisagree
}

func compareExact(a, b string) Level {
	switch {
	case a == "" || b == "":
		return LevelMissing
	case a == b:
		return LevelExact
	}
	return LevelDisagree
}

// compareText compares free text (street, city). The loose level is used only
// when loose is set.
func compareText(a, b string, loose bool) Level {
	switch {
	case a == "" || b == "":
		return LevelMissing
	case a == b:
		return LevelExact
	}
	l := jwLevel(a, b)
	if l == LevelLoose && !loose {
		return LevelDisagree
	}
	if l == LevelDisagree && strings.ReplaceAll(a, " ", "") == strings.ReplaceAll(b, " ", "") {
		return LevelSimilar
	}
	return l
}

func comparePhone(a, b string) Level {
	switch {
	case a == "" || b == "":
		return LevelMissing
	case a == b:
		return LevelExact
	case oneEdit(a, b):
		return LevelTypo
	case len(a) >= 7 && len(b) >= 7 && a[len(a)-7:] == b[len(b)-7:]:
		return LevelPartial
	}
	return LevelDisagree
}

// oneEdit reports whether a and b differ by exactly one substitution,
// insertion, deletion or exchange of neighbouring characters (bytes).
func oneEdit(a, b string) bool {
	if a == b {
		return false
	}
	la, lb := len(a), len(b)
	switch {
	case la == lb:
		i := 0
		for i < la && a[i] == b[i] {
			i++
		}
		if a[i+1:] == b[i+1:] {
			return true // one substitution
		}
		return i+1 < la && a[i] == b[i+1] && a[i+1] == b[i] && a[i+2:] == b[i+2:]
	case la == lb+1:
		return oneInsert(b, a)
	case lb == la+1:
		return oneInsert(a, b)
	}
	return false
}

// oneInsert reports whether long is short with one byte inserted.
func oneInsert(short, long string) bool {
	i := 0
	for i < len(short) && short[i] == long[i] {
		i++
	}
	return short[i:] == long[i+1:]
}

// sortComparisons orders comparisons by descending score, then candidate key
// so that results are deterministic.
func sortComparisons(cs []Comparison) {
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Score != cs[j].Score {
			return cs[i].Score > cs[j].Score
		}
		a, b := cs[i].Candidate, cs[j].Candidate
		if a.Authority != b.Authority {
			return a.Authority < b.Authority
		}
		return a.MRN < b.MRN
	})
}
