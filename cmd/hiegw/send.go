package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/mllp"
)

func runSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hiegw send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:2575", "MLLP address of the receiver")
	repeat := fs.Int("repeat", 1, "send every message this many times, each copy with a fresh MSH-10 (load test)")
	conns := fs.Int("connections", 1, "parallel connections; each waits for its ACK before sending the next message")
	timeout := fs.Duration("timeout", 30*time.Second, "time to wait for each ACK")
	caFile := fs.String("tls-ca", "", "use TLS, verifying the server with this CA file")
	certFile := fs.String("tls-cert", "", "client certificate for mutual TLS")
	keyFile := fs.String("tls-key", "", "client key for mutual TLS")
	patients := fs.Int("patients", 0, "with --repeat: spread the copies over this many made-up patients, so that the receiver matches and stores\nmany patients rather than one: copy k is about patient k mod N (PID-3 identifiers, PID-5 name, PID-7 birth date,\nPID-11 street and postcode and PID-13 telephone made from that number)")
	quiet := fs.Bool("quiet", false, "print only the summary and the messages that were not accepted")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: hiegw send [flags] FILE...\n\nSends each HL7 v2 message (a file may hold several: separated by blank lines, one after another, or as an FHS/BHS batch) and prints one line per ACK: control id, ACK code, error text. Exits 1 if any message was not accepted (AA/CA).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitCode(2)
	}
	var msgs [][]byte
	for _, f := range fs.Args() {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		b, err := hl7.SplitBatch(data)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		for _, m := range b.Messages {
			msgs = append(msgs, toCR(m))
		}
	}
	if len(msgs) == 0 {
		return fmt.Errorf("no HL7 v2 message found in %s", strings.Join(fs.Args(), ", "))
	}
	if *patients < 0 || *patients > 1_000_000 {
		return fmt.Errorf("--patients %d: want 0 (the messages as they are) up to 1000000", *patients)
	}
	// people[i][p] is message i about patient p, made before sending so
	// that the tool's CPU goes to sending.
	var people [][][]byte
	if *patients > 0 && *repeat > 1 {
		for i, m := range msgs {
			row := make([][]byte, min(*patients, *repeat))
			for p := range row {
				v, err := asPatient(m, p)
				if err != nil {
					return fmt.Errorf("message %d: --patients: %w", i+1, err)
				}
				row[p] = v
			}
			people = append(people, row)
		}
	}
	var tlsConf *tls.Config
	if *caFile != "" || *certFile != "" {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
		if *caFile != "" {
			pool, err := caPool(*caFile)
			if err != nil {
				return err
			}
			tlsConf.RootCAs = pool
		}
		if *certFile != "" {
			cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
			if err != nil {
				return err
			}
			tlsConf.Certificates = []tls.Certificate{cert}
		}
	}
	load := *repeat > 1 || *conns > 1
	total := len(msgs) * *repeat
	type job struct {
		msg, nth int
	}
	jobs := make(chan job, *conns*2)
	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, total)
		failures  atomic.Int64
		errs      []error
		seq       atomic.Int64
		wg        sync.WaitGroup
	)
	runID := runPrefix(time.Now())
	start := time.Now()
	for c := 0; c < *conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := mllp.Dial(ctx, *addr, tlsConf)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				for range jobs {
					failures.Add(1)
				}
				return
			}
			defer cl.Close()
			cl.Timeout = *timeout
			for j := range jobs {
				m := msgs[j.msg]
				if people != nil {
					m = people[j.msg][j.nth%len(people[j.msg])]
				}
				if *repeat > 1 {
					m = setControlID(m, runID+strconv.FormatInt(seq.Add(1), 10))
				}
				t0 := time.Now()
				reply, err := cl.Send(ctx, m)
				lat := time.Since(t0)
				// Under load only the replies that are not accepted are
				// printed; the others are recognised from MSA-1 alone, so
				// the tool's CPU goes to sending rather than to parsing.
				ok, line := load && err == nil && acceptedFast(reply), ""
				if !ok {
					line, ok = describeACK(m, reply, err)
				}
				if !ok {
					failures.Add(1)
				}
				mu.Lock()
				latencies = append(latencies, lat)
				if !*quiet && !load || !ok {
					fmt.Fprintln(stdout, line)
				}
				mu.Unlock()
				if err != nil {
					for range jobs {
						failures.Add(1)
					}
					return
				}
			}
		}()
	}
feed:
	for r := 0; r < *repeat; r++ {
		for i := range msgs {
			select {
			case jobs <- job{msg: i, nth: r}:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		fmt.Fprintln(stderr, "hiegw send:", err)
	}
	if load {
		slices.Sort(latencies)
		fmt.Fprintf(stdout, "sent %d messages over %d connections in %s: %.0f messages/s; ACK latency p50 %s p99 %s max %s; not accepted %d\n",
			len(latencies), *conns, elapsed.Round(time.Millisecond), float64(len(latencies))/elapsed.Seconds(),
			pct(latencies, 0.50), pct(latencies, 0.99), pct(latencies, 1), failures.Load())
	}
	if failures.Load() > 0 || len(errs) > 0 {
		return exitCode(1)
	}
	return nil
}

// runPrefix starts the control ids of one load run's copies: "L" and the
// start time in microseconds since the epoch in base 36, so that two runs
// started within the same second do not collide (the second run's copies
// would be answered as duplicates and never processed). With a counter of
// up to nine digits the id stays within 20 characters, MSH-10's length in
// v2.5.
func runPrefix(t time.Time) string { return "L" + strconv.FormatInt(t.UnixMicro(), 36) }

func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(float64(len(s)-1) * p)
	return s[i].Round(time.Microsecond)
}

// toCR turns LF and CRLF segment ends into the CR that MLLP peers expect.
func toCR(m []byte) []byte {
	m = bytes.ReplaceAll(m, []byte("\r\n"), []byte("\r"))
	m = bytes.ReplaceAll(m, []byte("\n"), []byte("\r"))
	return bytes.TrimRight(m, "\r")
}

// setControlID returns a copy of m with MSH-10 replaced.
func setControlID(m []byte, id string) []byte {
	if len(m) < 4 || string(m[:3]) != "MSH" {
		return m
	}
	fsep := m[3]
	end := bytes.IndexByte(m, '\r')
	if end < 0 {
		end = len(m)
	}
	fields := bytes.Split(m[:end], []byte{fsep})
	// fields[0] is "MSH", fields[i] is MSH-(i+1) for i >= 1.
	for len(fields) < 10 {
		fields = append(fields, nil)
	}
	fields[9] = []byte(id)
	out := bytes.Join(fields, []byte{fsep})
	return append(out, m[end:]...)
}

// Names and streets for asPatient's made-up patients: different enough
// that a matcher does not take neighbours in the list for one person.
var (
	familyNames = strings.Fields(`ANDERSON BAKER CAMPBELL DIAZ EDWARDS FISCHER GARCIA HUGHES IVANOV JENSEN
		KOWALSKI LOPEZ MORGAN NGUYEN OKAFOR PATEL QUINN ROSSI SANTOS TANAKA ULRICH VARGAS WALSH XU YAMADA ZIMMERMANN
		BECKER CHEN DUBOIS EVANS FOSTER GUPTA HOLM ITO JOHANSSON KIM LARSEN MULLER NOVAK OLSEN PETROV RAMIREZ SILVA`)
	givenNames = strings.Fields(`JAMES MARY ROBERT PATRICIA JOHN JENNIFER MICHAEL LINDA DAVID ELIZABETH WILLIAM
		BARBARA RICHARD SUSAN JOSEPH JESSICA THOMAS SARAH CHARLES KAREN CHRISTOPHER LISA DANIEL NANCY MATTHEW BETTY
		ANTHONY MARGARET MARK SANDRA DONALD ASHLEY STEVEN KIMBERLY PAUL EMILY ANDREW DONNA JOSHUA MICHELLE KENNETH
		CAROL KEVIN AMANDA BRIAN MELISSA GEORGE DEBORAH`)
	streetNames = strings.Fields(`OAK MAPLE CEDAR PINE ELM WALNUT CHESTNUT BIRCH WILLOW ASPEN SPRUCE HICKORY
		MAGNOLIA SYCAMORE POPLAR LAUREL`)
)

// asPatient returns a copy of m about made-up patient p: each PID-3
// identifier gets "-p" appended, and the name (PID-5), birth date (PID-7),
// street and postcode (PID-11) and telephone number (PID-13) are made from
// p, so that two patients share no identifier and look like different
// people to a matcher. Only what m has is changed.
func asPatient(m []byte, p int) ([]byte, error) {
	msg, err := hl7.Parse(m)
	if err != nil {
		return nil, err
	}
	if _, ok := msg.First("PID"); !ok {
		return nil, errors.New("no PID segment")
	}
	b := hl7.Edit(msg)
	set := func(path, value string) error {
		if msg.Get(path) == "" {
			return nil
		}
		return b.Set(path, value)
	}
	for r := 1; r <= b.RepCount("PID-3"); r++ {
		path := fmt.Sprintf("PID-3[%d].1", r)
		if id := msg.Get(path); id != "" {
			if err := b.Set(path, id+"-"+strconv.Itoa(p)); err != nil {
				return nil, err
			}
		}
	}
	nf, ng := len(familyNames), len(givenNames)
	if err := set("PID-5.1", familyNames[p%nf]); err != nil {
		return nil, err
	}
	if err := set("PID-5.2", givenNames[(p/nf)%ng]); err != nil {
		return nil, err
	}
	if err := set("PID-5.3", string(rune('A'+(p/(nf*ng))%26))); err != nil {
		return nil, err
	}
	if dob := msg.Get("PID-7"); len(dob) >= 8 {
		t, err := time.Parse("20060102", dob[:8])
		if err != nil {
			return nil, fmt.Errorf("PID-7 %q is not a date", dob)
		}
		// 367 days apart over about 70 years: neighbours differ in day,
		// month and year.
		if err := b.Set("PID-7", t.AddDate(0, 0, -(p*367)%25600).Format("20060102")+dob[8:]); err != nil {
			return nil, err
		}
	}
	street := fmt.Sprintf("%d %s STREET", 1+p/len(streetNames), streetNames[p%len(streetNames)])
	if err := set("PID-11.1", street); err != nil {
		return nil, err
	}
	if err := set("PID-11.5", fmt.Sprintf("%05d", (p*7919+10007)%100_000)); err != nil {
		return nil, err
	}
	phone := fmt.Sprintf("%07d", (p*7919+1234567)%10_000_000)
	if err := set("PID-13.7", phone); err != nil {
		return nil, err
	}
	if msg.Get("PID-13.7") == "" {
		if err := set("PID-13.1", "555"+phone); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// acceptedFast reports whether reply is a positive acknowledgement (MSA-1
// AA or CA), reading only MSH-1 and the MSA segment. False means "not
// recognised as accepted"; describeACK then reads the reply properly.
func acceptedFast(reply []byte) bool {
	if len(reply) < 4 || string(reply[:3]) != "MSH" {
		return false
	}
	fsep := reply[3]
	for rest := reply; len(rest) > 0; {
		seg := rest
		if i := bytes.IndexByte(rest, '\r'); i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if len(seg) < 4 || string(seg[:3]) != "MSA" || seg[3] != fsep {
			continue
		}
		code := seg[4:]
		if i := bytes.IndexByte(code, fsep); i >= 0 {
			code = code[:i]
		}
		return string(code) == "AA" || string(code) == "CA"
	}
	return false
}

// describeACK prints "CONTROLID CODE text" for one exchange.
func describeACK(msg, reply []byte, err error) (string, bool) {
	h, _, _ := hl7.ParseHeader(msg)
	id := h.ControlID
	if id == "" {
		id = "-"
	}
	if err != nil {
		return fmt.Sprintf("%s ERROR %v", id, err), false
	}
	ack, perr := hl7.Parse(reply)
	if perr != nil {
		return fmt.Sprintf("%s ERROR unreadable ACK: %v", id, perr), false
	}
	code := ack.Get("MSA-1")
	var texts []string
	if t := ack.Get("MSA-3"); t != "" {
		texts = append(texts, t)
	}
	if errs, _ := ack.Query("ERR[*]-8"); len(errs) > 0 {
		for _, e := range errs {
			if e != "" {
				texts = append(texts, e)
			}
		}
	}
	line := id + " " + code
	if len(texts) > 0 {
		line += " " + strings.Join(texts, "; ")
	}
	return line, code == "AA" || code == "CA"
}
