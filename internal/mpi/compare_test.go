package mpi

import (
	"testing"
)

func TestFold(t *testing.T) {
	for in, want := range map[string]string{
		"Muñoz":      "munoz",
		"JOSÉ":       "jose",
		"Øster":      "oster",
		"Straße":     "strasse",
		"Łukasz":     "lukasz",
		"plain text": "plain text",
	} {
		if got := fold(in); got != want {
			t.Errorf("fold(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNameTokens(t *testing.T) {
	got := nameTokens("O'Brien-Núñez  jr.")
	want := []string{"obrien", "nunez", "jr"}
	if len(got) != len(want) {
		t.Fatalf("nameTokens = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("nameTokens = %q, want %q", got, want)
		}
	}
}

func TestNYSIIS(t *testing.T) {
	exact := map[string]string{"brown": "BRAN", "knight": "NAGT", "": ""}
	for in, want := range exact {
		if got := nysiis(in); got != want {
			t.Errorf("nysiis(%q) = %q, want %q", in, got, want)
		}
	}
	same := [][2]string{
		{"brown", "browne"}, {"smith", "smyth"}, {"macdonald", "mcdonald"},
		{"phillips", "fillips"}, {"catherine", "katherine"}, {"schmidt", "sschmidt"},
	}
	for _, p := range same {
		if a, b := nysiis(p[0]), nysiis(p[1]); a != b {
			t.Errorf("nysiis(%q) = %q, nysiis(%q) = %q: want equal", p[0], a, p[1], b)
		}
	}
	differ := [][2]string{{"smith", "jones"}, {"green", "brown"}, {"mitchell", "michael"}}
	for _, p := range differ {
		if a, b := nysiis(p[0]), nysiis(p[1]); a == b {
			t.Errorf("nysiis(%q) = nysiis(%q) = %q: want different", p[0], p[1], a)
		}
	}
}

func TestNicknames(t *testing.T) {
	yes := [][2]string{{"bill", "william"}, {"william", "liam"}, {"peggy", "margaret"}, {"pat", "patricia"}, {"pat", "patrick"}}
	for _, p := range yes {
		if !isNickname(p[0], p[1]) || !isNickname(p[1], p[0]) {
			t.Errorf("isNickname(%q, %q) = false, want true", p[0], p[1])
		}
	}
	no := [][2]string{{"bob", "william"}, {"patricia", "patrick"}, {"zzz", "william"}}
	for _, p := range no {
		if isNickname(p[0], p[1]) {
			t.Errorf("isNickname(%q, %q) = true, want false", p[0], p[1])
		}
	}
}

func TestCompareGiven(t *testing.T) {
	cases := []struct {
		a, b string
		want Level
	}{
		{"william", "william", LevelExact},
		{"bill", "william", LevelNickname},
		{"cathy", "kathy", LevelPhonetic},
		{"stephanie", "stephnaie", LevelSimilar},
		{"michael", "mitchell", LevelLoose},
		{"michael", "margaret", LevelDisagree},
		{"", "john", LevelMissing},
	}
	for _, c := range cases {
		if got := compareGiven(c.a, c.b, nysiis(c.a), nysiis(c.b)); got != c.want {
			t.Errorf("compareGiven(%q, %q) = %s, want %s", c.a, c.b, got, c.want)
		}
	}
}

func TestCompareDate(t *testing.T) {
	cases := []struct {
		a, b string
		want Level
	}{
		{"19560409", "19560409", LevelExact},
		{"19560409", "19560904", LevelSwapped},
		{"19560409", "19560408", LevelTypo},
		{"19560409", "19650409", LevelTypo}, // neighbouring digits exchanged
		{"19560409", "19560422", LevelPartial},
		{"19560409", "19711123", LevelDisagree},
		{"", "19711123", LevelMissing},
	}
	for _, c := range cases {
		if got := compareDate(c.a, c.b); got != c.want {
			t.Errorf("compareDate(%s, %s) = %s, want %s", c.a, c.b, got, c.want)
		}
	}
	if normDate("1956-04-09") != "19560409" || normDate("195604091230+0100") != "19560409" || normDate("1956") != "" {
		t.Error("normDate does not normalise YYYY-MM-DD, HL7 TS or reject short dates")
	}
}

func TestOneEdit(t *testing.T) {
	yes := [][2]string{{"1804974", "1804975"}, {"1804974", "1809474"}, {"1804974", "180974"}, {"180974", "1804974"}, {"ab", "ba"}}
	for _, p := range yes {
		if !oneEdit(p[0], p[1]) {
			t.Errorf("oneEdit(%q, %q) = false", p[0], p[1])
		}
	}
	no := [][2]string{{"1804974", "1804974"}, {"1804974", "1840975"}, {"1804974", "18049"}, {"abc", "cab"}}
	for _, p := range no {
		if oneEdit(p[0], p[1]) {
			t.Errorf("oneEdit(%q, %q) = true", p[0], p[1])
		}
	}
}

func TestSplitAddress(t *testing.T) {
	h, s, r := splitAddress([]string{"7 Wallaby Place", "Delmar  Unit 2"})
	if h != "7" || s != "wallaby pl" || r != "delmar u 2" {
		t.Errorf("splitAddress = %q %q %q", h, s, r)
	}
	h, s, _ = splitAddress([]string{"", "Wallaby Street"})
	if h != "" || s != "wallaby st" {
		t.Errorf("splitAddress with empty first line = %q %q", h, s)
	}
	if compareText("pridhamstreet", "pridham st", true) == LevelDisagree {
		t.Error("joined street words should not disagree")
	}
}

func TestComparePhone(t *testing.T) {
	if got := comparePhone(normPhone("+61 (2) 9876-5432"), normPhone("02 9876 5432")); got != LevelExact {
		t.Errorf("phone with country code vs trunk prefix = %s, want exact", got)
	}
	if got := comparePhone(normPhone("0298765432"), normPhone("0398765432")); got != LevelTypo {
		t.Errorf("one digit changed = %s, want typo", got)
	}
	if normPhone("12345") != "" {
		t.Error("a short number should count as missing")
	}
}

func TestCompareTransposedNames(t *testing.T) {
	w := DefaultParams().weights()
	a := newFeatures(&Record{Given: "Mitchell", Family: "Green", BirthDate: "19560409"})
	b := newFeatures(&Record{Given: "Green", Family: "Mitchell", BirthDate: "19560409"})
	score, fs := compare(a, b, w)
	if fs[0].Level != LevelExact || fs[1].Level != LevelExact || fs[0].Note == "" {
		t.Fatalf("transposed names: given %s family %s note %q", fs[0].Level, fs[1].Level, fs[0].Note)
	}
	straight, _ := compare(a, a, w)
	if score != straight {
		t.Errorf("transposed names scored %.2f, straight %.2f", score, straight)
	}
	c := newFeatures(&Record{Given: "Mitchell", Family: "Brown", BirthDate: "19560409"})
	if _, fs := compare(a, c, w); fs[0].Note != "" || fs[1].Level != LevelDisagree {
		t.Errorf("a different family name must not count as a transposition: %+v", fs[:2])
	}
}

func TestCompareNicknameAndDiacritics(t *testing.T) {
	w := DefaultParams().weights()
	a := newFeatures(&Record{Given: "William", Family: "Muñoz", BirthDate: "19800102", Sex: "M"})
	b := newFeatures(&Record{Given: "Bill", Family: "MUNOZ", BirthDate: "1980-01-02", Sex: "male"})
	_, fs := compare(a, b, w)
	levels := map[Field]Level{}
	for _, f := range fs {
		levels[f.Field] = f.Level
	}
	if levels[FieldGiven] != LevelNickname || levels[FieldFamily] != LevelExact ||
		levels[FieldBirthDate] != LevelExact || levels[FieldSex] != LevelExact || levels[FieldCity] != LevelMissing {
		t.Errorf("levels = %v", levels)
	}
}

func TestParamsValidate(t *testing.T) {
	if err := DefaultParams().Validate(); err != nil {
		t.Fatal(err)
	}
	p := DefaultParams()
	p[FieldSex][LevelExact] = Probability{M: 1, U: 0.5}
	if p.Validate() == nil {
		t.Error("m = 1 accepted")
	}
	p = DefaultParams()
	delete(p[FieldSex], LevelDisagree)
	if p.Validate() == nil {
		t.Error("field without disagree level accepted")
	}
	p = DefaultParams()
	p[FieldSex]["agree"] = Probability{M: 0.9, U: 0.5}
	if p.Validate() == nil {
		t.Error("unknown level accepted")
	}
	p = DefaultParams()
	p["shoe_size"] = map[Level]Probability{LevelDisagree: {M: 0.1, U: 0.9}}
	if p.Validate() == nil {
		t.Error("unknown field accepted")
	}
	w := DefaultParams().weights()
	for _, f := range fields {
		if w.of(f, LevelExact) <= 0 {
			t.Errorf("field %s: exact agreement weighs %.2f, want positive", f, w.of(f, LevelExact))
		}
		if w.of(f, LevelDisagree) >= 0 {
			t.Errorf("field %s: disagreement weighs %.2f, want negative", f, w.of(f, LevelDisagree))
		}
	}
}

func TestEstimateParams(t *testing.T) {
	recs, _, err := LoadFEBRL(benchFile(t, "febrl_dataset1.csv"))
	if err != nil {
		t.Fatal(err)
	}
	p, share, err := EstimateParams(recs, DefaultParams(), EstimateOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	// dataset1 has 500 true pairs; the blocked pairs are a few thousand.
	if share <= 0.01 || share >= 0.9 {
		t.Errorf("estimated match share %.3f", share)
	}
	w := p.weights()
	for _, f := range []Field{FieldGiven, FieldFamily, FieldBirthDate, FieldNationalID, FieldPostcode} {
		if w.of(f, LevelExact) < 3 || w.of(f, LevelDisagree) > -1 {
			t.Errorf("field %s: exact %.2f disagree %.2f", f, w.of(f, LevelExact), w.of(f, LevelDisagree))
		}
		t.Logf("%s: exact m=%.3f u=%.5f w=%.2f; disagree w=%.2f", f, p[f][LevelExact].M, p[f][LevelExact].U, w.of(f, LevelExact), w.of(f, LevelDisagree))
	}
	if _, _, err := EstimateParams(recs[:1], DefaultParams(), EstimateOptions{}); err == nil {
		t.Error("one record accepted")
	}
}
