package gateway

import (
	"context"
	"database/sql"
	"fmt"

	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/mllp"
	"github.com/hiegw/hiegw/internal/store"
	_ "github.com/lib/pq"
)

func TestCrashEmbedded(t *testing.T) { crash(t, "") }

func TestCrashPostgres(t *testing.T) { crash(t, store.TestPostgresDSN(t)) }

// gatewayProcess is `hiegw serve` run as a child process on fixed ports, so
// that it can be killed and started again on the same addresses and data.
type gatewayProcess struct {
	bin, dataDir, dsn          string
	mllp, http, broker, mapDir string
	cmd                        *exec.Cmd
	exited                     chan struct{}
}

func (p *gatewayProcess) start(t *testing.T) {
	t.Helper()
	args := []string{"serve", "--data-dir", p.dataDir, "--mllp-addr", p.mllp, "--http-addr", p.http,
		"--broker-addr", p.broker, "--sftp-addr", "", "--mappings-dir", p.mapDir, "--log-level", "warn"}
	if p.dsn != "" {
		args = append(args, "--postgres-dsn", p.dsn)
	}
	p.cmd = exec.Command(p.bin, args...)
	p.cmd.Env = append(os.Environ(), "HIEGW_CONFIG=")
	if testing.Verbose() {
		p.cmd.Stderr = os.Stderr
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(p.cmd, p.exited)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + p.http + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("hiegw exited at start: %v", p.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("hiegw did not become healthy")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *gatewayProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

func (p *gatewayProcess) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		p.kill(t)
		t.Error("hiegw did not stop on SIGTERM")
	}
}

// buildBinary builds cmd/hiegw into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hiegw")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/hiegw")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// crash sends 5,000 messages over several connections while the gateway
// process is SIGKILLed and restarted three times. Senders behave like
// interface engines: a message without an ACK is sent again. Every message
// acknowledged AA/CA must be stored exactly once, and its event must be on
// Kafka at least once.
func crash(t *testing.T, dsn string) {
	if testing.Short() {
		t.Skip("crash test skipped with -short")
	}
	const (
		total    = 5000
		senders  = 4
		patients = 40
		kills    = 3
	)
	p := &gatewayProcess{bin: buildBinary(t), dataDir: t.TempDir(), dsn: dsn, mapDir: mustAbs(t, filepath.Join("..", "..", "mappings")),
		mllp: freePort(t), http: freePort(t), broker: freePort(t)}
	p.start(t)

	var acked atomic.Int64
	ackedIDs := make([][]string, senders)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cl *mllp.Client
			defer func() {
				if cl != nil {
					cl.Close()
				}
			}()
			for i := w; i < total; i += senders {
				id := fmt.Sprintf("K%d-%05d", w, i)
				mrn := fmt.Sprint(5000 + i%patients)
				var msg []byte
				if i%4 == 0 {
					msg = adtMsg("FAC"+fmt.Sprint(w), id, "A08", mrn, "")
				} else {
					msg = oruMsg("FAC"+fmt.Sprint(w), id, mrn, i)
				}
				for {
					if ctx.Err() != nil {
						errs <- fmt.Errorf("sender %d: gave up at %s", w, id)
						return
					}
					if cl == nil {
						c, err := mllp.Dial(ctx, p.mllp, nil)
						if err != nil {
							time.Sleep(50 * time.Millisecond)
							continue
						}
						c.Timeout = 20 * time.Second
						cl = c
					}
					reply, err := cl.Send(ctx, msg)
					if err != nil {
						// The gateway died: reconnect and send it again.
						cl.Close()
						cl = nil
						continue
					}
					ack, err := hl7.Parse(reply)
					if err != nil {
						errs <- fmt.Errorf("sender %d: unreadable ACK for %s", w, id)
						return
					}
					if code := ack.Get("MSA-1"); code == "AA" || code == "CA" {
						ackedIDs[w] = append(ackedIDs[w], id)
						acked.Add(1)
						break
					}
					// AR/AE would mean the store refused it; an engine would
					// retry, and so do we, a little later.
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	sendersDone := make(chan struct{})
	go func() { wg.Wait(); close(sendersDone) }()
	for k := 1; k <= kills; k++ {
		// Kill at about a quarter, a half and three quarters of the way.
		for acked.Load() < int64(k*total/(kills+1)) {
			select {
			case <-sendersDone:
			case <-time.After(20 * time.Millisecond):
				continue
			}
			break
		}
		p.kill(t)
		t.Logf("SIGKILL %d after %d acknowledged messages", k, acked.Load())
		p.start(t)
	}
	<-sendersDone
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := acked.Load(); n != total {
		t.Fatalf("%d messages acknowledged, want %d", n, total)
	}

	// Every acknowledged message's event reaches Kafka at least once.
	want := map[string]bool{}
	for _, ids := range ackedIDs {
		for _, id := range ids {
			want[id] = true
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	var missing int
	for {
		seen := map[string]bool{}
		for _, m := range readTopicOnce(t, p.broker, "hie.events") {
			seen[m.control] = true
		}
		missing = 0
		for id := range want {
			if !seen[id] {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if missing > 0 {
		t.Errorf("%d acknowledged messages have no event on Kafka", missing)
	}
	p.stop(t)

	// Every acknowledged message is in the store exactly once, processed.
	var db *sql.DB
	var err error
	if dsn != "" {
		db, err = sql.Open("postgres", dsn)
	} else {
		// The embedded store keeps the envelope log in its own file.
		db, err = sql.Open("sqlite", filepath.Join(p.dataDir, "intake.db"))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT control_id, status, COUNT(*) FROM envelopes GROUP BY control_id, status`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	stored := map[string]int{}
	for rows.Next() {
		var id, status string
		var n int
		if err := rows.Scan(&id, &status, &n); err != nil {
			t.Fatal(err)
		}
		stored[id] += n
		if status != "processed" {
			t.Errorf("%s is %s", id, status)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for id := range want {
		if stored[id] != 1 {
			t.Errorf("%s stored %d times", id, stored[id])
		}
	}
	if len(stored) != total {
		t.Errorf("%d distinct messages stored, want %d", len(stored), total)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
