package intake

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/store"
)

// memStore keeps inserted envelopes in memory; it detects no duplicates.
type memStore struct {
	mu   sync.Mutex
	envs []*store.Envelope
}

func (m *memStore) InsertEnvelopes(_ context.Context, envs []*store.Envelope) ([]store.Inserted, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]store.Inserted, len(envs))
	for i, e := range envs {
		m.envs = append(m.envs, e)
		out[i] = store.Inserted{ID: e.ID, Status: e.Status, Error: e.Error, ACK: e.ACK}
	}
	return out, nil
}

const msgFrom = "MSH|^~\\&|LIS|%s|HIEGW|HIE|20260101120000||ORU^R01^ORU_R01|C%s|P|2.5.1\rPID|1||12345^^^HOSP^MR||DOE^JANE\r"

func msg(facility, id string) []byte {
	return []byte(fmt.Sprintf(msgFrom, facility, id))
}

func TestSendingFacilityChecked(t *testing.T) {
	st := &memStore{}
	in := New(st, Options{})
	defer in.Close()
	cases := []struct {
		facility   string
		allowed    []string
		wantCode   string
		wantDenied bool
	}{
		{"CITYLAB", []string{"CITYLAB", "NORTHLAB"}, "AA", false},
		{"citylab", []string{"CITYLAB"}, "AA", false},
		{"OTHERHOSP", []string{"CITYLAB"}, "AR", true},
		{"", []string{"CITYLAB"}, "AR", true},
		{"ANYONE", nil, "AA", false},
	}
	for i, tc := range cases {
		env := &Envelope{Channel: ChannelMLLP, Sender: "citylab-feed", Facilities: tc.allowed, ReceivedAt: time.Now(),
			Raw: msg(tc.facility, string(rune('0'+i)))}
		rec, err := in.Accept(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := hl7.Parse(rec.ACK)
		if err != nil {
			t.Fatalf("case %d: unreadable ACK: %v", i, err)
		}
		if got := ack.Get("MSA-1"); got != tc.wantCode || rec.Denied != tc.wantDenied {
			t.Errorf("case %d (%s): ACK %s denied %v, want %s %v", i, tc.facility, got, rec.Denied, tc.wantCode, tc.wantDenied)
		}
		if tc.wantDenied {
			if ack.Get("ERR-2") == "" || !strings.Contains(string(rec.ACK), "MSH^1^4") {
				t.Errorf("case %d: ERR does not locate MSH-4: %q", i, rec.ACK)
			}
			if rec.Status != StatusRejected {
				t.Errorf("case %d: status %s", i, rec.Status)
			}
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, e := range st.envs {
		if e.Sender != "citylab-feed" {
			t.Errorf("stored sender %q, want the authenticated name", e.Sender)
		}
		if strings.Contains(e.Error, "DOE") || strings.Contains(e.Error, "12345") {
			t.Errorf("reason holds patient data: %q", e.Error)
		}
	}
	if len(st.envs) != len(cases) {
		t.Fatalf("stored %d envelopes, want %d", len(st.envs), len(cases))
	}
}
