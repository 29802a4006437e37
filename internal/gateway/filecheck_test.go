package gateway

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hiegw/hiegw/internal/intake"
	"github.com/hiegw/hiegw/internal/mapping"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/pkg/sftp"
)

// strictMappings copies the shipped mapping set, adds a file for sender EMR1
// that requires the Patient's identifier (patientRole/id) as the default set
// does, so that refusals name EMR1's rule, and one for EMR2 that does not
// require it, so that the same document maps for EMR2.
func strictMappings(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "..", "mappings"))); err != nil {
		t.Fatal(err)
	}
	strict := "senders: [EMR1]\nresources:\n  ccda-patient:\n    elements:\n      identifier:\n        value: ii(\"id\")\n        required: true\n"
	if err := os.WriteFile(filepath.Join(dir, "senders", "emr1.yaml"), []byte(strict), 0o600); err != nil {
		t.Fatal(err)
	}
	lenient := "senders: [EMR2]\nresources:\n  ccda-patient:\n    elements:\n      identifier: ii(\"id\")\n"
	if err := os.WriteFile(filepath.Join(dir, "senders", "emr2.yaml"), []byte(lenient), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sampleCCD is testdata/ccda/sample_ccd.xml; without ids, its patientRole's
// <id> elements are removed.
func sampleCCD(t *testing.T, withIDs bool) []byte {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "testdata", "ccda", "sample_ccd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if withIDs {
		return doc
	}
	s := string(doc)
	start, end := strings.Index(s, "<patientRole>"), strings.Index(s, "<patient>")
	if start < 0 || end < start {
		t.Fatal("sample_ccd.xml has no patientRole before its patient")
	}
	head := regexp.MustCompile(`<id\b[^>]*/>`).ReplaceAllString(s[start:end], "")
	if head == s[start:end] {
		t.Fatal("sample_ccd.xml's patientRole has no id to remove")
	}
	return []byte(s[:start] + head + s[end:])
}

// TestFileCheckMapsCCDAForItsSender: the check refuses a document its
// sender's mapping rules cannot map, naming the XML path and the rule, and
// accepts it for a sender whose rules can; what it mapped is handed to
// processing only for the same sender and mapping version.
func TestFileCheckMapsCCDAForItsSender(t *testing.T) {
	set, err := mapping.Load(strictMappings(t))
	if err != nil {
		t.Fatal(err)
	}
	docs := newDocCache(4)
	fc := newFileCheck(mapping.NewHolder(set), docs, nil)
	noID, good := sampleCCD(t, false), sampleCCD(t, true)

	reason := fc.check("emr1", true, intake.KindCCDA, noID)
	for _, want := range []string{"cannot be mapped", "/ClinicalDocument/recordTarget[1]/patientRole", "Patient.identifier",
		"rule senders/emr1.yaml:"} {
		if !strings.Contains(reason, want) {
			t.Fatalf("reason %q does not name %q", reason, want)
		}
	}
	if strings.Contains(reason, "Los Angeles") || strings.Contains(reason, "28366080") {
		t.Fatalf("reason carries document content: %q", reason)
	}
	if _, res, err := docs.parse("emr1", set.Version(), noID); err != nil || res != nil {
		t.Fatalf("a refused document was handed on: %v %v", res, err)
	}
	if reason := fc.check("emr2", true, intake.KindCCDA, noID); reason != "" {
		t.Fatalf("emr2's rules do not require the id, yet: %s", reason)
	}
	if reason := fc.check("", false, intake.KindCCDA, noID); reason != "" {
		t.Fatalf("with no sender known a document is only parsed, yet: %s", reason)
	}
	if reason := fc.check("emr3", true, intake.KindCCDA, noID); !strings.Contains(reason, "rule default/ccda.yaml:") {
		t.Fatalf("the default rules require the patient's id, yet: %q", reason)
	}
	if reason := fc.check("emr1", true, intake.KindCCDA, []byte("<ClinicalDocument><unclosed>")); reason == "" {
		t.Fatal("a broken document passed")
	}

	// The mapping made at the check is what processing uses, once.
	if reason := fc.check("emr1", true, intake.KindCCDA, good); reason != "" {
		t.Fatal(reason)
	}
	doc, res, err := docs.parse("emr1", set.Version(), good)
	if err != nil || doc == nil || res == nil || len(res.Resources) == 0 || res.Resources[0].Type() != "Patient" {
		t.Fatalf("intake's mapping not handed on: %v %v", res, err)
	}
	if _, again, _ := docs.parse("emr1", set.Version(), good); again != nil {
		t.Fatal("handed on twice")
	}
	// Not for another sender, nor another mapping version.
	for _, tc := range []struct{ sender, version string }{{"emr2", set.Version()}, {"emr1", "other-version"}} {
		if reason := fc.check("emr1", true, intake.KindCCDA, good); reason != "" {
			t.Fatal(reason)
		}
		doc, res, err := docs.parse(tc.sender, tc.version, good)
		if err != nil || doc == nil || res != nil {
			t.Fatalf("%s/%s: handed on a mapping made for emr1/%s", tc.sender, tc.version, set.Version())
		}
	}
	// Processing gets the same result as mapping it afresh.
	n := normalizer{maps: mapping.NewHolder(set), docs: docs}
	if reason := fc.check("emr1", true, intake.KindCCDA, good); reason != "" {
		t.Fatal(reason)
	}
	handed, err := n.NormalizeCCDA("emr1", good)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := n.NormalizeCCDA("emr1", good)
	if err != nil {
		t.Fatal(err)
	}
	if len(handed.Resources) != len(fresh.Resources) || handed.Event != fresh.Event {
		t.Fatalf("handed on: %d resources (%s), mapped afresh: %d (%s)", len(handed.Resources), handed.Event,
			len(fresh.Resources), fresh.Event)
	}
}

// TestSFTPUnmappableCCDALandsInFailed: over SFTP, a C-CDA document the
// uploader's mapping rules cannot map is refused at pickup: it lands in
// failed/ with NAME.error.txt naming the XML path and the rule, is stored as
// rejected and never processed. The same document from a sender whose rules
// map it is accepted, and a good document from the strict sender too.
func TestSFTPUnmappableCCDALandsInFailed(t *testing.T) {
	dataDir := t.TempDir()
	c := testConfig(t, dataDir, "")
	c.Mappings.Dir = strictMappings(t)
	r, addr := startWithSFTP(t, c, "emr1", "emr2")
	defer r.shutdown(t)
	upload := func(user, name string, data []byte) {
		t.Helper()
		conn, err := dialSFTP(addr, user, "correct horse")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cl, err := sftp.NewClient(conn)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		putFile(t, cl, "/inbox/"+name, data)
	}
	waitPath := func(path string) []byte {
		t.Helper()
		var got []byte
		waitFor(t, path, func() bool {
			b, err := os.ReadFile(path)
			got = b
			return err == nil
		})
		return got
	}
	noID := sampleCCD(t, false)
	upload("emr1", "noid.xml", noID)
	upload("emr2", "noid.xml", noID)
	upload("emr1", "good.xml", sampleCCD(t, true))

	failed := filepath.Join(dataDir, "sftp", "emr1", "failed")
	why := string(waitPath(filepath.Join(failed, "noid.xml.error.txt")))
	for _, want := range []string{"/ClinicalDocument/recordTarget[1]/patientRole", "Patient.identifier", "rule senders/emr1.yaml:"} {
		if !strings.Contains(why, want) {
			t.Fatalf("noid.xml.error.txt %q does not name %q", why, want)
		}
	}
	if got := waitPath(filepath.Join(failed, "noid.xml")); string(got) != string(noID) {
		t.Fatal("failed/noid.xml holds different bytes")
	}
	waitPath(filepath.Join(dataDir, "sftp", "emr2", "processed", "noid.xml"))
	waitPath(filepath.Join(dataDir, "sftp", "emr1", "processed", "good.xml"))
	if _, err := os.Stat(filepath.Join(dataDir, "sftp", "emr1", "processed", "noid.xml")); err == nil {
		t.Fatal("the refused document is in processed/ too")
	}

	// In the store: emr1's document rejected at intake with the same reason,
	// never processed; its good one processed.
	waitFor(t, "emr1's documents settled", func() bool {
		es, err := r.g.DB().ListEnvelopes(context.Background(), store.EnvelopeFilter{Sender: "emr1"})
		if err != nil || len(es) != 2 {
			return false
		}
		for _, e := range es {
			if e.Status != intake.StatusRejected && e.Status != intake.StatusProcessed {
				return false
			}
		}
		return true
	})
	es, err := r.g.DB().ListEnvelopes(context.Background(), store.EnvelopeFilter{Sender: "emr1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		switch e.Filename {
		case "noid.xml":
			if e.Status != intake.StatusRejected || !strings.Contains(e.Error, "Patient.identifier") || e.Attempts != 0 {
				t.Errorf("noid.xml: status %s, attempts %d, error %q", e.Status, e.Attempts, e.Error)
			}
		case "good.xml":
			if e.Status != intake.StatusProcessed {
				t.Errorf("good.xml: status %s (%s)", e.Status, e.Error)
			}
		default:
			t.Errorf("unexpected envelope %q", e.Filename)
		}
	}
}

// BenchmarkFileCheckCCDA: what the pickup check costs for the sample C-CDA,
// parsed only (a sender it does not know) and parsed and mapped.
func BenchmarkFileCheckCCDA(b *testing.B) {
	set, err := mapping.Load(filepath.Join("..", "..", "mappings"))
	if err != nil {
		b.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "testdata", "ccda", "sample_ccd.xml"))
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		known bool
	}{{"parse", false}, {"parse+map", true}} {
		b.Run(tc.name, func(b *testing.B) {
			fc := newFileCheck(mapping.NewHolder(set), newDocCache(4), nil)
			b.ReportAllocs()
			for b.Loop() {
				if reason := fc.check("emr1", tc.known, intake.KindCCDA, doc); reason != "" {
					b.Fatal(reason)
				}
			}
		})
	}
}
