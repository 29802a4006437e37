package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/config"
	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/mllp"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/segmentio/kafka-go"
)

// Synthetic messages for the routing and durability tests. Every patient's
// MRN is assigned by GOODHEALTH, so the master patient index links the
// messages of all senders to one enterprise id per patient; demographics
// differ enough per MRN that no two patients are linked by matching.

var (
	families = []string{"ABERNATHY", "BUCKMINSTER", "CHATTERJEE", "DELACROIX", "EKWUEME", "FITZGERALD", "GUNDERSEN", "HALVORSEN", "IBARRA", "JANKOWSKI"}
	givens   = []string{"MARGARET", "THEODORE", "PRIYA", "LUCIEN", "CHIDI", "ROSALIND", "BJORN", "INGRID", "XIMENA", "TOMASZ"}
)

// pidOf is a PID segment for an MRN made of digits.
func pidOf(mrn string) string {
	n := 0
	for _, c := range mrn {
		n = n*10 + int(c-'0')
	}
	sex := "F"
	if n%2 == 1 {
		sex = "M"
	}
	return fmt.Sprintf("PID|1||%s^^^GOODHEALTH^MR||%s^%s||19%02d%02d%02d|%s\r", mrn, families[n%10], givens[(n/10)%10],
		40+n%50, 1+n%12, 1+n%28, sex)
}

func adtMsg(facility, control, trigger, mrn, pcp string) []byte {
	s := "MSH|^~\\&|ADT|" + facility + "|HIEGW|HIE|20261124083000||ADT^" + trigger + "^ADT_A01|" + control + "|P|2.5.1\r" +
		"EVN|" + trigger + "|20261124083000\r" +
		pidOf(mrn)
	if pcp != "" {
		s += "PD1||||" + pcp + "^WELBY^MARCUS^^^DR\r"
	}
	return []byte(s + "PV1|1|I|4W^401^A||||9999^ATTEND^ANN^^^DR\r")
}

func oruMsg(facility, control, mrn string, glucose int) []byte {
	return []byte("MSH|^~\\&|LAB|" + facility + "|HIEGW|HIE|20261124101500||ORU^R01^ORU_R01|" + control + "|P|2.5.1\r" +
		pidOf(mrn) +
		"OBR|1|ORD" + control + "||24323-8^Comprehensive metabolic panel^LN|||20261124090000\r" +
		fmt.Sprintf("OBX|1|NM|2345-7^Glucose^LN||%d|mg/dL|70-99|H|||F|||20261124090000\r", glucose))
}

func rdeMsg(facility, control, mrn string) []byte {
	return []byte("MSH|^~\\&|PHARM|" + facility + "|HIEGW|HIE|20261124100000||RDE^O11^RDE_O11|" + control + "|P|2.5.1\r" +
		pidOf(mrn) +
		"ORC|NW|RX" + control + "|||||||20261124100000\r" +
		"RXE||00047040230^Ampicillin 250 mg caps^NDC|250||mg^milligram^UCUM\r")
}

type topicMsg struct {
	key, control string
	headers      map[string]string
	value        []byte
}

// readTopic reads every partition of a topic from the start until it holds
// at least n messages or wait passes; values are returned as sent.
func readTopic(t *testing.T, broker, topic string, n int, wait time.Duration) []topicMsg {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		out := readTopicOnce(t, broker, topic)
		if len(out) >= n || time.Now().After(deadline) {
			return out
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func readTopicOnce(t *testing.T, broker, topic string) []topicMsg {
	t.Helper()
	conn, err := kafka.DialContext(context.Background(), "tcp", broker)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return nil // not created yet
	}
	var out []topicMsg
	for _, p := range parts {
		// Read up to the partition's end as it is now, however slowly the
		// broker answers on a busy machine.
		leader, err := kafka.DialLeader(context.Background(), "tcp", broker, topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		end, err := leader.ReadLastOffset()
		leader.Close()
		if err != nil {
			t.Fatal(err)
		}
		if end == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: p.ID,
			MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 50 * time.Millisecond})
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			m, err := r.ReadMessage(ctx)
			cancel()
			if err != nil {
				t.Fatalf("read %s partition %d: %v", topic, p.ID, err)
			}
			tm := topicMsg{key: string(m.Key), headers: map[string]string{}, value: m.Value}
			for _, h := range m.Headers {
				tm.headers[h.Key] = string(h.Value)
			}
			tm.control = tm.headers["hiegw-message-id"]
			out = append(out, tm)
			if m.Offset+1 >= end {
				break
			}
		}
		r.Close()
	}
	return out
}

// sendAll sends msgs in order over one connection per facility and fails on
// anything but an accepting ACK.
func sendAll(t *testing.T, addr string, msgs [][]byte) {
	t.Helper()
	conns := map[string]*mllp.Client{}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, m := range msgs {
		h, _, err := hl7.ParseHeader(m)
		if err != nil {
			t.Fatal(err)
		}
		fac := h.SendingFacility.NamespaceID
		c := conns[fac]
		if c == nil {
			if c, err = mllp.Dial(context.Background(), addr, nil); err != nil {
				t.Fatal(err)
			}
			conns[fac] = c
		}
		reply, err := c.Send(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := hl7.Parse(reply)
		if err != nil {
			t.Fatalf("unreadable ACK: %v", err)
		}
		if code := ack.Get("MSA-1"); code != "AA" && code != "CA" {
			t.Fatalf("message %s answered %s", h.ControlID, code)
		}
	}
}

const routingSubscriptions = `subscriptions:
  - name: springfield-practice
    kind: provider
    topic: practice.springfield
    events: [admit, discharge, transfer, update, result]
    patients: ["urn:hiegw:aa:GOODHEALTH|1001"]
    attribution:
      practitioners: ["1234"]
      roles: [pcp]
  - name: northlab
    kind: lab
    topic: lab.northlab
    format: hl7v2
    events: [result]
    facilities: [NORTHLAB]
    resource_types: [Observation]
  - name: corner-pharmacy
    kind: pharmacy
    topic: pharmacy.corner
    events: [medication]
    resource_types: [MedicationRequest]
`

func TestRoutingEmbedded(t *testing.T) { routing(t, "") }

func TestRoutingPostgres(t *testing.T) { routing(t, store.TestPostgresDSN(t)) }

// routing feeds a mixed stream through the real gateway to three
// subscribers and reads each topic back with a Kafka client.
func routing(t *testing.T, dsn string) {
	dir := t.TempDir()
	subs := filepath.Join(dir, "subscriptions.yaml")
	if err := os.WriteFile(subs, []byte(routingSubscriptions), 0o600); err != nil {
		t.Fatal(err)
	}
	c := testConfig(t, filepath.Join(dir, "data"), dsn)
	c.Subscriptions.File = subs
	r := start(t, c)
	defer r.shutdown(t)

	// P1 (MRN 1001) is on the practice's panel by local id, P2 (1002) is
	// attributed to the practice's PCP 1234 in PD1-4, P3 (1003) is neither.
	stream := [][]byte{
		adtMsg("GOODHEALTH", "A1", "A01", "1001", ""),
		adtMsg("GOODHEALTH", "A2", "A01", "1002", "1234"),
		adtMsg("GOODHEALTH", "A3", "A01", "1003", "4321"),
		oruMsg("NORTHLAB", "L1", "1001", 101),
		oruMsg("NORTHLAB", "L2", "1003", 102),
		oruMsg("SOUTHLAB", "S1", "1002", 103),
		rdeMsg("GOODHEALTH", "R1", "1001"),
		rdeMsg("GOODHEALTH", "R2", "1003"),
		adtMsg("GOODHEALTH", "A4", "A08", "1001", ""),
		oruMsg("NORTHLAB", "L3", "1001", 104),
		adtMsg("GOODHEALTH", "A5", "A03", "1001", ""),
		oruMsg("SOUTHLAB", "S2", "1003", 105),
		adtMsg("GOODHEALTH", "A6", "A08", "1002", "1234"),
	}
	sendAll(t, r.g.MLLPAddr(), stream)
	order := map[string]int{}
	for i, m := range stream {
		h, _, _ := hl7.ParseHeader(m)
		order[h.ControlID] = i
	}

	want := map[string][]string{
		// An ORU carries no PD1 here, so S1 (P2's result) is not attributed:
		// attribution reads the event itself.
		"practice.springfield": {"A1", "A2", "L1", "A4", "L3", "A5", "A6"},
		"lab.northlab":         {"L1", "L2", "L3"},
		"pharmacy.corner":      {"R1", "R2"},
	}
	broker := r.g.BrokerAddr()
	keys := map[string]string{} // control id -> key, across topics
	for topic, controls := range want {
		got := readTopic(t, broker, topic, len(controls), 60*time.Second)
		var ids []string
		byKey := map[string][]string{}
		for _, m := range got {
			ids = append(ids, m.control)
			byKey[m.key] = append(byKey[m.key], m.control)
			if k, ok := keys[m.control]; ok && k != m.key {
				t.Errorf("%s: %s keyed %q here and %q elsewhere", topic, m.control, m.key, k)
			}
			keys[m.control] = m.key
			if m.key == "" {
				t.Errorf("%s: %s has no key", topic, m.control)
			}
		}
		sorted := slices.Clone(ids)
		slices.Sort(sorted)
		wantSorted := slices.Clone(controls)
		slices.Sort(wantSorted)
		if !slices.Equal(sorted, wantSorted) {
			t.Errorf("%s holds %v, want exactly %v", topic, sorted, wantSorted)
		}
		// Per patient (key), each sender's events are in the order sent.
		for key, seq := range byKey {
			last := map[string]int{}
			for _, id := range seq {
				sender := id[:1]
				if o, ok := last[sender]; ok && order[id] < o {
					t.Errorf("%s key %s: %v out of order", topic, key, seq)
				}
				last[sender] = order[id]
			}
		}
		if topic == "lab.northlab" {
			for _, m := range got {
				checkHL7Event(t, m)
			}
		}
	}
	// One enterprise id per patient across topics and senders.
	same := [][]string{{"A1", "L1", "R1", "A4", "L3", "A5"}, {"A2", "A6"}, {"L2", "R2"}}
	for _, group := range same {
		for _, id := range group[1:] {
			if keys[id] != keys[group[0]] {
				t.Errorf("%s and %s are one patient but keyed %q and %q", group[0], id, keys[group[0]], keys[id])
			}
		}
	}
	if keys["A1"] == keys["A2"] || keys["A1"] == keys["L2"] || keys["A2"] == keys["L2"] {
		t.Errorf("different patients share a key: %v", keys)
	}
	// A3, S1 and S2 matched no subscription: counted, not dropped silently.
	if got := metric(t, r.g.HTTPAddr(), "hiegw_route_unmatched_total"); got != "3" {
		t.Errorf("hiegw_route_unmatched_total = %q, want 3", got)
	}
}

// checkHL7Event checks a lab event: the original message with the
// enterprise id added to PID-3.
func checkHL7Event(t *testing.T, m topicMsg) {
	t.Helper()
	if m.headers["content-type"] != "x-application/hl7-v2+er7" {
		t.Errorf("lab event %s content-type %q", m.control, m.headers["content-type"])
	}
	msg, err := hl7.Parse(m.value)
	if err != nil {
		t.Errorf("lab event %s is not HL7 v2: %v", m.control, err)
		return
	}
	if msg.Get("MSH-10") != m.control || msg.Get("OBX-3.1") != "2345-7" {
		t.Errorf("lab event %s: MSH-10 %q OBX-3 %q", m.control, msg.Get("MSH-10"), msg.Get("OBX-3.1"))
	}
	pid, _ := msg.First("PID")
	f := pid.Field(3)
	first, last := f.Rep(1), f.Rep(f.RepCount())
	if first.Component(1).String() == "" || last.Component(1).String() != m.key || last.Component(4).String() != "HIEGW" {
		t.Errorf("lab event %s: PID-3 %q lacks the enterprise id %q", m.control, f.Raw(), m.key)
	}
}

// metric reads one unlabelled sample from /metrics.
func metric(t *testing.T, httpAddr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	return ""
}

// BenchmarkEndToEnd measures messages per second from MLLP senders (four
// connections, each waiting for its ACK) until the events are acknowledged
// by the embedded broker, through intake, mapping, patient matching, the
// record store and the outbox relay.
func BenchmarkEndToEnd(b *testing.B) {
	b.Run("embedded", func(b *testing.B) { benchEndToEnd(b, "") })
	b.Run("postgres", func(b *testing.B) { benchEndToEnd(b, store.TestPostgresDSN(b)) })
}

func benchEndToEnd(b *testing.B, dsn string) {
	c := config.Default()
	c.DataDir = b.TempDir()
	c.MLLP.Addr, c.HTTP.Addr, c.Broker.Addr, c.SFTP.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", ""
	c.Mappings.Dir = filepath.Join("..", "..", "mappings")
	c.Store.PostgresDSN = dsn
	if err := c.Validate(); err != nil {
		b.Fatal(err)
	}
	g, err := New(context.Background(), c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()

	const conns = 4
	msgs := make([][]byte, b.N)
	for i := range msgs {
		mrn := fmt.Sprint(7000 + i%200)
		if i%4 == 0 {
			msgs[i] = adtMsg(fmt.Sprint("FAC", i%conns), fmt.Sprint("B", i), "A08", mrn, "")
		} else {
			msgs[i] = oruMsg(fmt.Sprint("FAC", i%conns), fmt.Sprint("B", i), mrn, i)
		}
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := mllp.Dial(context.Background(), g.MLLPAddr(), nil)
			if err != nil {
				b.Error(err)
				return
			}
			defer cl.Close()
			for i := w; i < len(msgs); i += conns {
				if _, err := cl.Send(context.Background(), msgs[i]); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	acked := time.Since(start)
	for {
		st, err := g.DB().OutboxCounts(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		var sent int64
		for _, s := range st {
			sent += s.Sent
		}
		if sent >= int64(b.N) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/acked.Seconds(), "acks/s")
}
