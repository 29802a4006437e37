package gateway

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// largeORU is an ORU^R01 of n numeric results: its Bundle is about 1.3 KB
// per result.
func largeORU(n int) []byte {
	var b strings.Builder
	b.WriteString("MSH|^~\\&|LAB|GHH LAB|HIE|HIEGW|20240111101500-0500||ORU^R01^ORU_R01|BIG1|P|2.5.1\r")
	b.WriteString("PID|1||555001^^^GHH^MR||Example^Pat||19700301|M\r")
	b.WriteString("OBR|1|PO100^GHH|FO200^GHHLAB|24323-8^CMP^LN|||20240111080000-0500|||||||||||||||20240111100000-0500|||F\r")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "OBX|%d|NM|%d-%d^Analyte %d^LN||%d.%d|mg/dL^^UCUM|70-99|N|||F|||20240111080000-0500\r", i, 2000+i, i%10, i, 60+i, i)
	}
	return []byte(b.String())
}

// TestLargeEvent: the Bundle of an ORU^R01 with 1,500 results (about 2 MB,
// twice the broker's message size limit) reaches hie.events compressed, as
// the default kafka.compression does. Without compression the broker
// refuses it: it goes at once to hie.events.dlq, without its payload and
// with the reason.
func TestLargeEvent(t *testing.T) {
	for _, compression := range []string{"snappy", "none"} {
		t.Run(compression, func(t *testing.T) {
			c := testConfig(t, t.TempDir(), "")
			c.Kafka.Compression = compression
			r := start(t, c)
			defer r.shutdown(t)
			if ack := send(t, r.g.MLLPAddr(), largeORU(1500)); ack.Get("MSA-1") != "AA" {
				t.Fatalf("ACK %q", ack.Raw())
			}
			if compression == "none" {
				dl := readTopic(t, r.g.BrokerAddr(), "hie.events.dlq", 1, 60*time.Second)
				if len(dl) != 1 || len(dl[0].value) != 0 || !strings.Contains(dl[0].headers["hiegw-dead-letter-reason"], "larger than the brokers accept") {
					t.Fatalf("dead-letter topic: %d messages %+v", len(dl), dl)
				}
				return
			}
			evs := readTopic(t, r.g.BrokerAddr(), "hie.events", 1, 60*time.Second)
			if len(evs) != 1 {
				t.Fatalf("%d events on hie.events", len(evs))
			}
			var bundle struct {
				Entry []json.RawMessage `json:"entry"`
			}
			if err := json.Unmarshal(evs[0].value, &bundle); err != nil {
				t.Fatal(err)
			}
			if len(evs[0].value) < 1<<20 || len(bundle.Entry) < 1500 {
				t.Fatalf("the event is %d bytes with %d entries; want more than 1 MB and 1,500 results", len(evs[0].value), len(bundle.Entry))
			}
		})
	}
}
