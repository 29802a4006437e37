package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/store"
)

// TestUpdateKeepsUnsentAndRemovesNulls: with the shipped ADT mappings
// (absent: keep), an A08 that leaves the address empty keeps the address an
// A01 stored, and one that sends "" for the home phone or the marital status
// removes them; the stored record and the routed Patient agree.
func TestUpdateKeepsUnsentAndRemovesNulls(t *testing.T) { updateKeepsUnsent(t, "") }

func TestUpdateKeepsUnsentAndRemovesNullsPostgres(t *testing.T) {
	updateKeepsUnsent(t, store.TestPostgresDSN(t))
}

func updateKeepsUnsent(t *testing.T, dsn string) {
	c := testConfig(t, t.TempDir(), dsn)
	r := start(t, c)
	defer r.shutdown(t)
	addr, broker := r.g.MLLPAddr(), r.g.BrokerAddr()

	send(t, addr, readFile(t, "adt_a01.hl7")) // address, home phone, no marital status
	a08 := func(id, pid string) {
		msg := "MSH|^~\\&|EPICADT|GOODHEALTH|HIEGW|HIE|20261124090000-0500||ADT^A08^ADT_A01|" + id + "|P|2.5.1\r" +
			"EVN|A08|20261124090000-0500\r" + pid + "\r" +
			"PV1|1|I|4W^401^A^GOODHEALTH||||1234^WELBY^MARCUS^^^DR|||MED||||1|||1234^WELBY^MARCUS^^^DR|IN\r"
		if ack := send(t, addr, []byte(msg)); ack.Get("MSA-1") != "AA" {
			t.Fatalf("%s: %q", id, ack.Raw())
		}
	}
	// Address empty (kept), home phone "" (removed), marital status M (set).
	a08("UPD0001", "PID|1||4455667^^^GOODHEALTH^MR||MUÑOZ^JOSÉ^Q||19670315|M|||||\"\"||E|M")
	// Address empty again (still kept), marital status "" (removed).
	a08("UPD0002", "PID|1||4455667^^^GOODHEALTH^MR||MUÑOZ^JOSÉ^Q||19670315|M|||||||E|\"\"")

	evs := readEvents(t, broker, "hie.events", 3, 30*time.Second)
	patient := map[string]string{}
	for _, e := range evs {
		pats := resourcesOf(e.bundle, "Patient")
		if len(pats) != 1 {
			t.Fatalf("%s: %d Patients", e.headers["hiegw-message-id"], len(pats))
		}
		b, _ := json.Marshal(pats[0])
		patient[e.headers["hiegw-message-id"]] = string(b)
	}
	has := func(id, part string) bool { return strings.Contains(patient[id], part) }
	if !has("ADT0001", "EVERGREEN") || !has("ADT0001", `"telecom"`) {
		t.Fatalf("A01 Patient: %s", patient["ADT0001"])
	}
	if !has("UPD0001", "EVERGREEN") || has("UPD0001", `"telecom"`) || !has("UPD0001", `"maritalStatus"`) {
		t.Fatalf("first update: address must stay, phone go, marital status come: %s", patient["UPD0001"])
	}
	if !has("UPD0002", "EVERGREEN") || has("UPD0002", `"maritalStatus"`) || has("UPD0002", `"telecom"`) {
		t.Fatalf("second update: address must stay, marital status go: %s", patient["UPD0002"])
	}

	// The stored record is the routed one.
	resp, err := http.Get("http://" + r.g.HTTPAddr() + "/api/v1/patients/" + evs[0].key + "/everything")
	if err != nil {
		t.Fatal(err)
	}
	var everything map[string]any
	err = json.NewDecoder(resp.Body).Decode(&everything)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	pats := resourcesOf(everything, "Patient")
	if len(pats) != 1 {
		t.Fatalf("record holds %d Patients", len(pats))
	}
	b, _ := json.Marshal(pats[0])
	if !strings.Contains(string(b), "EVERGREEN") || strings.Contains(string(b), `"maritalStatus"`) || strings.Contains(string(b), `"telecom"`) {
		t.Fatalf("stored Patient: %s", b)
	}
}
