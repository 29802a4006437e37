package intake

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/store"
)

// FuzzAccept sends any bytes to intake as an MLLP message and as an
// uploaded file. Whatever arrives is stored, good or bad, and an MLLP
// sender gets an acknowledgement that parses and says AA, AE, AR, CA, CE or
// CR, except where its MSH-15 asked for none.
func FuzzAccept(f *testing.F) {
	paths, _ := filepath.Glob("../../../shared/corpus/hl7v2/*/*")
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil && len(b) <= 16<<10 {
			f.Add(b)
		}
	}
	f.Add(goodMsg("F1", ""))
	f.Add(goodMsg("F2", "AL"))
	f.Add([]byte("MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5.1|||ER|AL||UNICODE UTF-8\rPID|1||1^^^H^MR\r"))
	f.Add([]byte("FHS|^~\\&|A\rBHS|^~\\&\rMSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5.1\rBTS|1\rFTS|1\r"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		st := &dupStore{seen: map[string]store.Inserted{}}
		in := New(st, Options{Supported: func(code, _ string) bool { return code != "QRY" }})
		defer in.Close()
		ctx := context.Background()
		rec, err := in.Accept(ctx, &Envelope{Channel: ChannelMLLP, ReceivedAt: time.Now(), Raw: raw})
		if err != nil {
			t.Fatalf("accept: %v", err)
		}
		if len(st.seen) != 1 || rec.EnvelopeID == "" {
			t.Fatalf("not stored: %d envelopes, id %q", len(st.seen), rec.EnvelopeID)
		}
		if rec.ACK != nil {
			ack, err := hl7.Parse(rec.ACK)
			if err != nil {
				t.Fatalf("the ACK does not parse: %v\n%q", err, rec.ACK)
			}
			switch code := ack.Get("MSA-1"); code {
			case "AA", "AE", "AR", "CA", "CE", "CR":
			default:
				t.Fatalf("MSA-1 %q in %q", code, rec.ACK)
			}
		} else if rec.Status == StatusRejected {
			if h, _, _ := hl7.ParseHeader(raw); h.AcceptAckType != "NE" && h.AcceptAckType != "SU" {
				t.Fatalf("a rejected message without an ACK (MSH-15 %q): %q", h.AcceptAckType, raw)
			}
		}
		if _, err := in.Accept(ctx, &Envelope{Channel: ChannelSFTP, Sender: "s", ReceivedAt: time.Now(), Raw: raw}); err != nil {
			t.Fatalf("accept file: %v", err)
		}
	})
}
