package mapping

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
)

// writeFile writes content into dir/name, creating directories.
func writeFile(t testing.TB, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// loadErrors loads a default set made of the shipped files plus one extra
// file and returns the located errors.
func loadErrors(t *testing.T, name, content string) []*Error {
	t.Helper()
	dir := setDir(t)
	writeFile(t, dir, name, content)
	_, err := Load(dir)
	if err == nil {
		t.Fatalf("Load accepted a broken %s", name)
	}
	errs := Errors(err)
	if len(errs) == 0 {
		t.Fatalf("no located errors in: %v", err)
	}
	return errs
}

func findErr(t *testing.T, errs []*Error, file string, line, col int, msgPart string) {
	t.Helper()
	for _, e := range errs {
		if e.File == file && e.Line == line && e.Column == col && strings.Contains(e.Msg, msgPart) {
			if !strings.Contains(e.Error(), "\n    ") || !strings.Contains(e.Error(), "^") {
				t.Errorf("no source line and caret in:\n%s", e)
			}
			return
		}
	}
	var all []string
	for _, e := range errs {
		all = append(all, e.Error())
	}
	t.Errorf("no error at %s:%d:%d containing %q; got:\n%s", file, line, col, msgPart, strings.Join(all, "\n"))
}

func TestErrorsAreLocated(t *testing.T) {
	t.Run("expression column inside a plain scalar", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `resources:
  patient:
    elements:
      birthDate: date("PID-7") +
`)
		// "date(" starts at column 18; the error is at the end of the expression
		findErr(t, errs, "senders/acme.yaml", 4, 32, "expression:")
	})
	t.Run("bracket not closed", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `resources:
  patient:
    elements:
      birthDate: date(v("PID-7")
      gender: lookup("administrative-sex", v('PID-8))
`)
		// The error points where the bracket or string opens, not at the
		// end where the expression library stops: date( at column 18
		// leaves its '(' at 22; the string 'PID-8)) opens at column 46.
		findErr(t, errs, "senders/acme.yaml", 4, 22, "expression: '(' is not closed")
		findErr(t, errs, "senders/acme.yaml", 5, 46, "expression: a string is not closed")
	})
	t.Run("unknown function", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `resources:
  patient:
    elements:
      gender: lookupp("administrative-sex", v("PID-8"))
`)
		findErr(t, errs, "senders/acme.yaml", 4, 15, "unknown name lookupp")
	})
	t.Run("bad HL7 path inside a string argument", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `resources:
  patient:
    elements:
      birthDate: date("PID-X")
`)
		// column of the X: date(" is at 18..23, P at 24, X at 28
		findErr(t, errs, "senders/acme.yaml", 4, 28, "expected a field number")
	})
	t.Run("expression in a literal block", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `resources:
  patient:
    elements:
      gender:
        value: |
          v("PID-8") == "M"
            ? "male" :: "female"
`)
		findErr(t, errs, "senders/acme.yaml", 7, 22, "expression:")
	})
	t.Run("unknown code table", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `resources:
  patient:
    elements:
      maritalStatus: cwe("PID-16", "marital")
`)
		findErr(t, errs, "senders/acme.yaml", 4, 37, `no code table "marital"`)
	})
	t.Run("misspelt FHIR element", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `resources:
  patient:
    elements:
      brithDate: date("PID-7")
`)
		findErr(t, errs, "senders/acme.yaml", 4, 7, `Patient has no element "brithDate"`)
	})
	t.Run("nested element path", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `resources:
  encounter:
    elements:
      period.begin: datetime("PV1-44")
`)
		findErr(t, errs, "senders/acme.yaml", 4, 14, `Period has no element "begin"`)
	})
	t.Run("unknown key and bad event", func(t *testing.T) {
		errs := loadErrors(t, "default/extra.yaml", `messages:
  - match: [SIU^S12]
    event: booked
    resource: [patient]
`)
		findErr(t, errs, "default/extra.yaml", 3, 12, "expected an event")
		findErr(t, errs, "default/extra.yaml", 4, 5, `unknown key "resource"`)
	})
	t.Run("YAML syntax", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", "resources:\n  patient:\n    elements:\n      gender: [unclosed\n")
		if errs[0].File != "senders/acme.yaml" || errs[0].Line == 0 {
			t.Errorf("YAML error not located: %v", errs[0])
		}
	})
	t.Run("code table", func(t *testing.T) {
		errs := loadErrors(t, "codes/broken.csv", "source_system,source_code,target_system,target_code,display\n,A,http://x,,Missing\n,B,http://x,b,ok\n,B,http://x,c,dup\n")
		findErr(t, errs, "codes/broken.csv", 2, 13, "target_code is empty")
		findErr(t, errs, "codes/broken.csv", 4, 2, "already mapped on line 3")
	})
	t.Run("every problem at once", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `resources:
  patient:
    elements:
      brithDate: date("PID-7")
      gender: v("PID-8"
      address: xad("PID-11[0]")
`)
		if len(errs) < 3 {
			t.Errorf("expected 3 problems, got %d: %v", len(errs), errs)
		}
	})
}

// TestErrorText checks the caret line sits under the column.
func TestErrorText(t *testing.T) {
	e := &Error{File: "senders/x.yaml", Line: 3, Column: 9, Msg: "boom", Source: "  a: b(c d)"}
	want := "senders/x.yaml:3:9: boom\n      a: b(c d)\n            ^"
	if e.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", e.Error(), want)
	}
}

const adtA01 = "MSH|^~\\&|A|B|C|D|20240110093000||ADT^A01|1|P|2.5.1\rPID|1||123^^^HOSP^MR||Doe^Jo||19700301|F\rPV1|1|I\r"

func parse(t testing.TB, s string) *hl7.Message {
	t.Helper()
	m, err := hl7.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestReloadRefusesBrokenSet: a broken set is refused, the old one keeps
// serving; a fixed set is then taken.
func TestReloadRefusesBrokenSet(t *testing.T) {
	dir := setDir(t)
	h := NewHolder(mustLoad(t, dir))
	v1 := h.Current().Version()
	writeFile(t, dir, "senders/acme.yaml", "resources:\n  patient:\n    elements:\n      gender: v(\"PID-8\"\n")
	err := h.Reload(dir)
	if err == nil {
		t.Fatal("broken set accepted")
	}
	if !strings.Contains(err.Error(), "senders/acme.yaml:4:") {
		t.Errorf("reload error does not name file and line: %v", err)
	}
	if h.Current().Version() != v1 {
		t.Fatal("the old set is no longer serving")
	}
	if _, err := h.Current().MapHL7("ACME", parse(t, adtA01)); err != nil {
		t.Fatalf("old set cannot map: %v", err)
	}
	writeFile(t, dir, "senders/acme.yaml", "resources:\n  patient:\n    elements:\n      gender:\n        const: other\n")
	if err := h.Reload(dir); err != nil {
		t.Fatal(err)
	}
	if h.Current().Version() == v1 {
		t.Fatal("version did not change")
	}
	r, err := h.Current().MapHL7("ACME", parse(t, adtA01))
	if err != nil {
		t.Fatal(err)
	}
	if r.Resources[0]["gender"] != "other" {
		t.Errorf("new set not in use: gender %v", r.Resources[0]["gender"])
	}
}

// TestWatch polls the directory and reloads on change, reporting refusals.
func TestWatch(t *testing.T) {
	dir := setDir(t)
	h := NewHolder(mustLoad(t, dir))
	v1 := h.Current().Version()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan error, 10)
	go h.Watch(ctx, dir, 10*time.Millisecond, func(version string, err error) { ch <- err })
	next := func() error {
		select {
		case err := <-ch:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("Watch did not react to a change")
			return nil
		}
	}

	writeFile(t, dir, "senders/acme.yaml", "resources: [\n")
	if err := next(); err == nil {
		t.Fatal("broken change accepted")
	}
	if h.Current().Version() != v1 {
		t.Fatal("broken change replaced the set")
	}
	writeFile(t, dir, "senders/acme.yaml", "timezone: Europe/Paris\n")
	if err := next(); err != nil {
		t.Fatalf("good change refused: %v", err)
	}
	if h.Current().Version() == v1 {
		t.Fatal("good change not taken")
	}
}

// TestConcurrentMapAndReload runs mapping while the set is swapped (run with -race).
func TestConcurrentMapAndReload(t *testing.T) {
	dir := setDir(t)
	h := NewHolder(mustLoad(t, dir))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 4; i++ {
		wg.Add(1)
		m := parse(t, adtA01) // a Message is read by one goroutine at a time
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := h.Current().MapHL7("ACME", m); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := 0; i < 3; i++ {
		if err := h.Reload(dir); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

// TestMapErrors: what cannot be mapped is a MapError naming location, field,
// rule and an HL7 0357 code, never the value.
func TestMapErrors(t *testing.T) {
	dir := setDir(t)
	writeFile(t, dir, "senders/strict.yaml", `resources:
  patient:
    elements:
      birthDate:
        value: date("PID-7")
        required: true
`)
	s := mustLoad(t, dir)
	cases := []struct {
		name, msg, loc, field, code string
	}{
		{"no identifier", "MSH|^~\\&|A|B|C|D|20240110093000||ADT^A01|1|P|2.5.1\rPID|1||||Doe^Jo||19700301\r", "PID^1^3", "Patient.id", CodeRequiredMissing},
		{"not a date", "MSH|^~\\&|A|B|C|D|20240110093000||ADT^A01|1|P|2.5.1\rPID|1||SECRET123^^^H^MR||Doe^Jo||19701399\r", "PID^1^7^1", "Patient.birthDate", CodeDataType},
		{"required missing", "MSH|^~\\&|A|B|C|D|20240110093000||ADT^A01|1|P|2.5.1\rPID|1||SECRET123^^^H^MR||Doe^Jo\r", "PID^1^7", "Patient.birthDate", CodeRequiredMissing},
		// The default patient rule is required: an ADT with no PID would
		// make an Encounter about nobody. A sender's override of the rule
		// keeps it required.
		{"required segment missing", "MSH|^~\\&|A|B|C|D|20240110093000||ADT^A01|1|P|2.5.1\rEVN|A01|20240110\rPV1|1|I|SECRET123\r", "PID", "Patient", CodeSegmentSequence},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.MapHL7("strict", parse(t, c.msg))
			var me *MapError
			if !errors.As(err, &me) {
				t.Fatalf("want a MapError, got %v", err)
			}
			if me.Location != c.loc || me.Field != c.field || me.Code != c.code || !strings.HasPrefix(me.Rule, "senders/strict.yaml:") && !strings.HasPrefix(me.Rule, "default/") {
				t.Errorf("got %+v", me)
			}
			for _, phi := range []string{"SECRET123", "Doe", "19701399"} {
				if strings.Contains(me.Error(), phi) {
					t.Errorf("error text holds a value: %s", me)
				}
			}
		})
	}
	// A sender may turn the requirement off: then the message maps to its
	// Encounter alone.
	writeFile(t, dir, "senders/nopid.yaml", "resources:\n  patient:\n    required: false\n")
	if r, err := mustLoad(t, dir).MapHL7("nopid", parse(t, cases[3].msg)); err != nil || len(r.Resources) != 1 || r.Resources[0].Type() != "Encounter" {
		t.Errorf("with required: false: %v, %v", r, err)
	}
	// the same bad date in an element not marked required is left out with a warning
	r, err := s.MapHL7("other", parse(t, cases[1].msg))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Resources[0]["birthDate"]; ok || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "PID^1^7^1") {
		t.Errorf("want birthDate left out with one located warning, got %v %v", r.Resources[0]["birthDate"], r.Warnings)
	}
	if strings.Contains(r.Warnings[0], "19701399") {
		t.Error("warning holds the value")
	}
}

// TestCheck prints ok for the shipped set and every located problem otherwise.
func TestCheck(t *testing.T) {
	var out strings.Builder
	if err := Check(&out, mappingsDir); err != nil || !strings.HasPrefix(out.String(), "ok: ") {
		t.Fatalf("shipped set: %v\n%s", err, out.String())
	}
	dir := setDir(t)
	writeFile(t, dir, "senders/acme.yaml", "resources:\n  patient:\n    elements:\n      brithDate: date(\"PID-7\")\n      gender: lookup(\"sex\", v(\"PID-8\"))\n")
	out.Reset()
	if err := Check(&out, dir); err == nil {
		t.Fatal("broken set passed Check")
	}
	for _, want := range []string{"senders/acme.yaml:4:7:", "senders/acme.yaml:5:23:", "2 problem(s)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in:\n%s", want, out.String())
		}
	}
}

// TestPanicIsAnApplicationError: a mapping that panics (a defect of hiegw)
// fails its message with a located application error carrying the stack,
// instead of stopping the gateway.
func TestPanicIsAnApplicationError(t *testing.T) {
	err := func() (err error) {
		st := statePool.Get().(*state)
		st.where = &elemRule{field: "Patient.birthDate", pos: "adt.yaml:12"}
		defer st.done(&err)
		var m map[string]int
		m["x"] = 1 // panics: assignment to entry in nil map
		return nil
	}()
	var me *MapError
	if !errors.As(err, &me) {
		t.Fatalf("got %v, want a *MapError", err)
	}
	if me.Code != CodeApplication || me.Field != "Patient.birthDate" || me.Rule != "adt.yaml:12" || len(me.Stack) == 0 ||
		!strings.Contains(me.Msg, "assignment to entry in nil map") || !strings.Contains(me.Msg, "internal error in hiegw") {
		t.Fatalf("got %+v", me)
	}
	// A panic carrying a value of its own is named by type, not quoted.
	err = func() (err error) {
		defer (&state{}).done(&err)
		if true {
			panic(fmt.Sprintf("value %s", "Jane Doe"))
		}
		return nil
	}()
	if !errors.As(err, &me) || strings.Contains(me.Msg, "Jane") || !strings.Contains(me.Msg, "a panic of type string") {
		t.Fatalf("got %v", err)
	}
}

// A panic while compiling refuses the set with a DefectError carrying the
// stack, rather than ending the gateway that compiles a changed set while it
// runs. A nil file stands in for a compiler defect.
func TestCompilePanicRefusesTheSet(t *testing.T) {
	s, err := compileSet("x", []*srcFile{nil})
	var de *DefectError
	if s != nil || !errors.As(err, &de) {
		t.Fatalf("got %v, %v; want a DefectError", s, err)
	}
	if !strings.Contains(de.What, "nil pointer") || !strings.Contains(string(de.Stack), "compileSet") ||
		!strings.Contains(err.Error(), "not in the files") {
		t.Errorf("defect %q, stack %.200s, error %q", de.What, de.Stack, err)
	}
}
