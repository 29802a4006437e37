package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/store"
)

// TestUnmappedCodesShowInTheMessageStatus: a result whose local code no
// table maps is processed, its code kept as sent, and the message's status
// on the API says which code, where and in which table.
func TestUnmappedCodesShowInTheMessageStatus(t *testing.T) {
	r := start(t, testConfig(t, t.TempDir(), ""))
	defer r.shutdown(t)
	msg := bytes.ReplaceAll(readFile(t, "oru_r01.hl7"), []byte("2345-7^Glucose^LN"), []byte("GLU^Glucose^99LOCAL"))
	if ack := send(t, r.g.MLLPAddr(), msg); ack.Get("MSA-1") != "AA" {
		t.Fatalf("ACK %q", ack.Raw())
	}
	db := r.g.DB()
	var e store.Envelope
	for deadline := time.Now().Add(20 * time.Second); e.Status != "processed"; {
		envs, err := db.ListEnvelopes(context.Background(), store.EnvelopeFilter{ControlID: "LAB0001"})
		if err != nil {
			t.Fatal(err)
		}
		if len(envs) == 1 {
			e = envs[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("not processed: %+v", e)
		}
		time.Sleep(25 * time.Millisecond)
	}
	code, body := apiGet(t, "http://"+r.g.HTTPAddr()+"/api/v1/messages/"+e.ID, "")
	if code != 200 {
		t.Fatalf("GET message: %d %s", code, body)
	}
	var v struct {
		Status string       `json:"status"`
		Notes  []store.Note `json:"notes"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, n := range v.Notes {
		if n.Kind == store.NoteUnmappedCode && strings.Contains(n.Detail, `"GLU"`) && strings.Contains(n.Detail, `"99LOCAL"`) &&
			strings.Contains(n.Detail, "OBX^1^3") {
			found = true
		}
	}
	if v.Status != "processed" || !found {
		t.Fatalf("status %q, notes %+v: the unmapped code is not in the message's status", v.Status, v.Notes)
	}
	// The codes that were mapped leave no note.
	for _, n := range v.Notes {
		if strings.Contains(n.Detail, "2160-0") {
			t.Fatalf("a mapped code has a note: %+v", n)
		}
	}
}

// TestMisdeclaredCharsetIsNoted: a message declared 8859/1 whose bytes are
// UTF-8 is accepted and read as declared, and its status says where the
// text looks mis-declared.
func TestMisdeclaredCharsetIsNoted(t *testing.T) {
	r := start(t, testConfig(t, t.TempDir(), ""))
	defer r.shutdown(t)
	msg := readFile(t, "oru_r01.hl7")
	msg = bytes.Replace(msg, []byte("|LAB0001|P|2.5.1"), []byte("|LAB0001|P|2.5.1||||||8859/1"), 1)
	if !bytes.Contains(msg, []byte("8859/1")) || !bytes.Contains(msg, []byte("MUÑOZ")) {
		t.Fatal("the sample no longer has the header or the accented name this test needs")
	}
	if ack := send(t, r.g.MLLPAddr(), msg); ack.Get("MSA-1") != "AA" {
		t.Fatalf("ACK %q", ack.Raw())
	}
	var notes []store.Note
	for deadline := time.Now().Add(20 * time.Second); ; {
		envs, err := r.g.DB().ListEnvelopes(context.Background(), store.EnvelopeFilter{ControlID: "LAB0001"})
		if err != nil {
			t.Fatal(err)
		}
		if len(envs) == 1 && envs[0].Status == "processed" {
			if notes, err = r.g.DB().EnvelopeNotes(context.Background(), envs[0].ID); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not processed: %+v", envs)
		}
		time.Sleep(25 * time.Millisecond)
	}
	for _, n := range notes {
		if n.Kind == store.NoteWarning && strings.Contains(n.Detail, "PID") && strings.Contains(n.Detail, "UTF-8") {
			if strings.Contains(n.Detail, "MUÑOZ") || strings.Contains(n.Detail, "MUÃ") {
				t.Fatalf("the note quotes the text: %q", n.Detail)
			}
			return
		}
	}
	t.Fatalf("no located charset warning among the notes %+v", notes)
}

// TestStructureDeparturesAreNoted: a message whose segments depart from
// its structure (a segment the structure does not have, one out of place)
// is processed, and its notes say where, by segment, without values.
func TestStructureDeparturesAreNoted(t *testing.T) {
	r := start(t, testConfig(t, t.TempDir(), ""))
	defer r.shutdown(t)
	msg := "MSH|^~\\&|ADT|GOODHEALTH|HIEGW|HIE|20261124083000||ADT^A01^ADT_A01|STRUCT1|P|2.5.1\r" +
		"EVN|A01|20261124083000\rPID|1||4455667^^^GOODHEALTH^MR||QWERTY^ANN||19620101|F\rPV1|1|I|4W^401^A\r" +
		"FOO|QWERTYSECRET\rEVN|A01|20261124083000\r"
	if ack := send(t, r.g.MLLPAddr(), []byte(msg)); ack.Get("MSA-1") != "AA" {
		t.Fatalf("ACK %q", ack.Raw())
	}
	var notes []store.Note
	waitFor(t, "STRUCT1 processed", func() bool {
		envs, err := r.g.DB().ListEnvelopes(context.Background(), store.EnvelopeFilter{ControlID: "STRUCT1"})
		if err != nil || len(envs) != 1 || envs[0].Status != "processed" {
			return false
		}
		notes, err = r.g.DB().EnvelopeNotes(context.Background(), envs[0].ID)
		return err == nil
	})
	var got []string
	for _, n := range notes {
		if strings.HasPrefix(n.Detail, "structure: ") {
			got = append(got, n.Detail)
		}
		if strings.Contains(n.Detail, "QWERTY") {
			t.Errorf("a note quotes the message: %q", n.Detail)
		}
	}
	if len(got) != 2 || !strings.Contains(got[0], "FOO^1") || !strings.Contains(got[1], "EVN^2") ||
		!strings.Contains(got[1], "out of place") {
		t.Fatalf("structure notes %q", got)
	}
}
