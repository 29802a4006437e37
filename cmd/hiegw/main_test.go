package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/api"
	"github.com/hiegw/hiegw/internal/defect"
	"github.com/hiegw/hiegw/internal/mapping"
	"github.com/hiegw/hiegw/internal/store"
)

func TestSetControlID(t *testing.T) {
	in := []byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|OLD|P|2.5.1\rPID|1")
	got := string(setControlID(in, "NEW1"))
	want := "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|NEW1|P|2.5.1\rPID|1"
	if got != want {
		t.Fatalf("got %q", got)
	}
	short := string(setControlID([]byte("MSH|^~\\&|A"), "X"))
	if !strings.HasPrefix(short, "MSH|^~\\&|A|") || !strings.HasSuffix(short, "|X") {
		t.Fatalf("short MSH: %q", short)
	}
}

func TestToCR(t *testing.T) {
	if got := string(toCR([]byte("MSH|1\r\nPID|2\nPV1|3\n"))); got != "MSH|1\rPID|2\rPV1|3" {
		t.Fatalf("got %q", got)
	}
}

func TestDescribeACK(t *testing.T) {
	msg := []byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|C1|P|2.5.1")
	line, ok := describeACK(msg, []byte("MSH|^~\\&|C|D|A|B|20260101||ACK^A01^ACK|X|P|2.5.1\rMSA|AE|C1\rERR||PID^1^7|102^Data type error^HL70357|E||||birth date is not a date"), nil)
	if ok || line != "C1 AE birth date is not a date" {
		t.Fatalf("%q %v", line, ok)
	}
	line, ok = describeACK(msg, []byte("MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1\rMSA|AA|C1"), nil)
	if !ok || line != "C1 AA" {
		t.Fatalf("%q %v", line, ok)
	}
	if _, ok := describeACK(msg, nil, errors.New("connection reset")); ok {
		t.Fatal("a transport error must not count as accepted")
	}
}

func TestCommands(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &errb); err != nil || !strings.HasPrefix(out.String(), "hiegw ") {
		t.Fatalf("version: %v %q", err, out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"token"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	var tok, hash string
	fmt.Sscanf(strings.SplitN(out.String(), "\n", 3)[0], "token: %s", &tok)
	fmt.Sscanf(strings.SplitN(out.String(), "\n", 3)[1], "hash: %s", &hash)
	if tok == "" || hash != api.HashToken(tok) {
		t.Fatalf("token output does not hash to itself: %q", out.String())
	}
	err := run(context.Background(), []string{"nonsense"}, &out, &errb)
	var ec exitCode
	if !errors.As(err, &ec) || ec != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("unknown command: %v %q", err, errb.String())
	}
	errb.Reset()
	err = run(context.Background(), []string{"serve", "--mllp-addr", "bad"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "mllp.addr") {
		t.Fatalf("serve with a bad address: %v", err)
	}
}

// openDataDir opens an embedded store in a new data directory and keeps it
// open until the test ends, as a gateway running beside the command would.
func openDataDir(t *testing.T) (string, *store.DB) {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(context.Background(), store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return dir, db
}

func TestReplayCommand(t *testing.T) {
	ctx := context.Background()
	dir, db := openDataDir(t)
	err := db.InTx(ctx, func(tx *store.Tx) error {
		return tx.AddOutbox(ctx,
			store.OutboxEntry{Subscriber: "pharmacy", Topic: "rx", Key: "p1", Headers: map[string]string{}, Payload: []byte("a")},
			store.OutboxEntry{Subscriber: "pharmacy", Topic: "rx", Key: "p2", Headers: map[string]string{}, Payload: []byte("b")},
			store.OutboxEntry{Subscriber: "lab", Topic: "lab", Key: "p1", Headers: map[string]string{}, Payload: []byte("c")})
	})
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	if err := run(ctx, []string{"replay", "--subscriber", "pharmacy", "--since", since, "--data-dir", dir}, &out, &errb); err != nil {
		t.Fatalf("replay: %v %s", err, errb.String())
	}
	if !strings.HasPrefix(out.String(), "queued 2 events of pharmacy") {
		t.Fatalf("output %q", out.String())
	}
	if err := run(ctx, []string{"replay", "--subscriber", "pharmacy"}, &out, &errb); err == nil {
		t.Fatal("replay without --since must fail")
	}
}

// TestReplayFailedCommand: --failed requeues the failed messages it is
// asked for and leaves the others alone; its flags are checked.
func TestReplayFailedCommand(t *testing.T) {
	ctx := context.Background()
	dir, db := openDataDir(t)
	old := time.Now().Add(-48 * time.Hour).UTC()
	envs := []*store.Envelope{
		{ID: "a1", Sender: "acme", ReceivedAt: old, ControlID: "A1", DedupKey: "acme|A1"},
		{ID: "a2", Sender: "acme", ReceivedAt: time.Now().UTC(), ControlID: "A2", DedupKey: "acme|A2"},
		{ID: "a3", Sender: "acme", ReceivedAt: time.Now().UTC(), ControlID: "A3", DedupKey: "acme|A3"},
		{ID: "b1", Sender: "beta", ReceivedAt: time.Now().UTC(), ControlID: "B1", DedupKey: "beta|B1"},
	}
	for _, e := range envs {
		e.Channel, e.Kind, e.MessageType, e.Status, e.Raw = "mllp", "hl7v2", "ADT^A01", "received", []byte("MSH|^~\\&|")
	}
	if _, err := db.InsertEnvelopes(ctx, envs); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a1", "a2", "b1"} {
		if err := db.MarkFailed(ctx, id, "PID-7: not a date"); err != nil {
			t.Fatal(err)
		}
	}
	status := func() string {
		var out []string
		for _, id := range []string{"a1", "a2", "a3", "b1"} {
			e, err := db.GetEnvelope(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, id+":"+e.Status)
		}
		return strings.Join(out, " ")
	}
	replay := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if err := run(ctx, append([]string{"replay", "--data-dir", dir}, args...), &out, &errb); err != nil {
			t.Fatalf("replay %v: %v %s", args, err, errb.String())
		}
		return out.String()
	}
	defer func(n int) { listPage = n }(listPage)
	listPage = 1 // every page but the last full
	out := replay("--failed", "--list", "--sender", "acme")
	if !strings.Contains(out, "  a1  acme  ADT^A01  A1  attempts 1  PID-7: not a date\n") || !strings.Contains(out, "  a2  acme  ") ||
		strings.Contains(out, "b1") || !strings.HasSuffix(out, "\n2 failed messages\n") {
		t.Fatalf("--list --sender acme:\n%s", out)
	}
	if out := replay("--failed", "--list", "b1", "a3"); !strings.Contains(out, "  b1  beta  ") || !strings.HasSuffix(out, "\n1 failed message\n") {
		t.Fatalf("--list b1 a3:\n%s", out)
	}
	if got := status(); got != "a1:failed a2:failed a3:received b1:failed" {
		t.Fatalf("--list changed the store: %s", got)
	}
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	if out := replay("--failed", "--sender", "acme", "--since", since); !strings.HasPrefix(out, "requeued 1 failed message;") {
		t.Fatalf("output %q", out)
	}
	if got := status(); got != "a1:failed a2:received a3:received b1:failed" {
		t.Fatalf("after --sender acme --since: %s", got)
	}
	if out := replay("--failed", "b1", "a3"); !strings.HasPrefix(out, "requeued 1 failed message;") {
		t.Fatalf("output %q", out)
	}
	if got := status(); got != "a1:failed a2:received a3:received b1:received" {
		t.Fatalf("after naming b1 and a3: %s", got)
	}
	for _, bad := range [][]string{
		{"--failed", "--subscriber", "lab"},
		{"--sender", "acme", "--subscriber", "lab", "--since", since},
		{"--failed", "--since", "yesterday"},
		{"--list", "--subscriber", "lab", "--since", since},
	} {
		var out, errb bytes.Buffer
		if err := run(ctx, append([]string{"replay", "--data-dir", dir}, bad...), &out, &errb); err == nil {
			t.Errorf("replay %v must fail", bad)
		}
	}
	if got := status(); got != "a1:failed a2:received a3:received b1:received" {
		t.Fatalf("a refused command changed the store: %s", got)
	}
}

func TestProcsDefault(t *testing.T) {
	old := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(old)
	none := func(string) string { return "" }
	if got := procsDefault(none, 0); got != old+spareProcs || runtime.GOMAXPROCS(0) != got {
		t.Errorf("GOMAXPROCS unset: reported %d, in force %d, want %d", got, runtime.GOMAXPROCS(0), old+spareProcs)
	}
	runtime.GOMAXPROCS(old)
	if got := procsDefault(none, float64(runtime.NumCPU())); got != old+spareProcs {
		t.Errorf("a CPU limit of every CPU: %d, want the spare Ps too (%d)", got, old+spareProcs)
	}
	runtime.GOMAXPROCS(old)
	if runtime.NumCPU() > 1 {
		if got := procsDefault(none, 0.5); got != old || runtime.GOMAXPROCS(0) != old {
			t.Errorf("under a CPU limit: reported %d, in force %d; the runtime's own reading must stand (%d)", got, runtime.GOMAXPROCS(0), old)
		}
	}
	env := map[string]string{"GOMAXPROCS": "1"}
	if got := procsDefault(func(k string) string { return env[k] }, 0); got != old || runtime.GOMAXPROCS(0) != old {
		t.Errorf("GOMAXPROCS set: reported %d, in force %d; the runtime's own reading must stand (%d)", got, runtime.GOMAXPROCS(0), old)
	}
}

// TestCPULimit reads made-up control-group trees: cgroup v2 and v1, limits
// on the group or an ancestor, a container's view whose path is absent under
// its mount, and none.
func TestCPULimit(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  float64
	}{
		{"v2 on the group", map[string]string{
			"proc/self/cgroup":                       "0::/kubepods/pod1/c1\n",
			"sys/fs/cgroup/kubepods/pod1/c1/cpu.max": "150000 100000\n",
			"sys/fs/cgroup/cpu.max":                  "max 100000\n"}, 1.5},
		{"v2 smaller on an ancestor", map[string]string{
			"proc/self/cgroup":          "0::/a/b\n",
			"sys/fs/cgroup/a/b/cpu.max": "300000 100000\n",
			"sys/fs/cgroup/a/cpu.max":   "50000 100000\n"}, 0.5},
		{"v2 none", map[string]string{
			"proc/self/cgroup":      "0::/\n",
			"sys/fs/cgroup/cpu.max": "max 100000\n"}, 0},
		{"v1 in a container", map[string]string{
			"proc/self/cgroup":                            "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n",
			"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us":  "200000\n",
			"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 2},
		{"v1 none", map[string]string{
			"proc/self/cgroup":                    "1:cpu:/\n2:cpuacct:/\n",
			"sys/fs/cgroup/cpu/cpu.cfs_quota_us":  "-1\n",
			"sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"}, 0},
		{"unreadable", map[string]string{"proc/self/cgroup": "garbage"}, 0},
	}
	for _, c := range cases {
		root := t.TempDir()
		for name, body := range c.files {
			p := filepath.Join(root, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if got := cpuLimit(root); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if got := cpuLimit(t.TempDir()); got != 0 {
		t.Errorf("no /proc: %v", got)
	}
}

func TestGCDefault(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	if got := gcDefault(func(string) string { return "" }); got != "200" {
		t.Errorf("GOGC unset: reported %q, want 200", got)
	}
	if now := debug.SetGCPercent(100); now != servingGCPercent {
		t.Errorf("GOGC unset: the collector's target is %d, want %d", now, servingGCPercent)
	}
	env := map[string]string{"GOGC": "50"}
	if got := gcDefault(func(k string) string { return env[k] }); got != "50" {
		t.Errorf("GOGC=50: reported %q", got)
	}
	if now := debug.SetGCPercent(100); now != 100 {
		t.Errorf("GOGC=50: the target was changed to %d; the runtime's own reading of GOGC must stand", now)
	}
}

// The analyst's tools print the stack of a defect of hiegw, in the
// compiler (defect.Error) or in a mapping (MapError with a stack), and
// nothing more for an error in the input.
func TestReportErr(t *testing.T) {
	compile := func() (err error) {
		defer defect.Catch("internal error in hiegw while compiling", &err)
		var m map[string]int
		m["x"]++
		return nil
	}
	for _, c := range []struct {
		err   error
		stack bool
	}{
		{compile(), true},
		{fmt.Errorf("dry run: %w", &mapping.MapError{Code: mapping.CodeApplication, Stack: []byte("goroutine 7 [running]:\nengine.go:311")}), true},
		{fmt.Errorf("dry run: %w", &mapping.MapError{Code: mapping.CodeRequiredMissing}), false},
		{errors.New("check mappings: 2 problem(s)"), false},
	} {
		var buf bytes.Buffer
		reportErr(&buf, c.err)
		out := buf.String()
		if !strings.HasPrefix(out, c.err.Error()+"\n") || strings.Contains(out, "goroutine ") != c.stack ||
			strings.Contains(out, "please report it") != c.stack {
			t.Errorf("%v printed:\n%s", c.err, out)
		}
	}
}

// hiegw health exits 0 on a ready answer, 1 with the gateway's reason on
// any other, and 1 when nothing answers; over https with --ca.
func TestHealth(t *testing.T) {
	ready := true
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"store": "journal: no space left on device"}`)
			return
		}
		fmt.Fprint(w, `{"store": "ok"}`)
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	health := func(args ...string) (string, string, error) {
		var out, errb bytes.Buffer
		err := run(context.Background(), append([]string{"health"}, args...), &out, &errb)
		return out.String(), errb.String(), err
	}
	if out, _, err := health("--url", srv.URL+"/readyz"); err != nil || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("ready: %v %q", err, out)
	}
	ready = false
	var ec exitCode
	if _, errs, err := health("--url", srv.URL+"/readyz"); !errors.As(err, &ec) || ec != 1 || !strings.Contains(errs, "503") ||
		!strings.Contains(errs, "no space left") {
		t.Fatalf("not ready: %v %q", err, errs)
	}
	closed := httptest.NewServer(h)
	closed.Close()
	if _, _, err := health("--url", closed.URL+"/readyz", "--timeout", "2s"); !errors.As(err, &ec) || ec != 1 {
		t.Fatalf("nothing listening: %v", err)
	}
	ready = true
	tlsSrv := httptest.NewTLSServer(h)
	defer tlsSrv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := health("--url", tlsSrv.URL+"/readyz"); !errors.As(err, &ec) || ec != 1 {
		t.Fatalf("https without its CA: %v", err)
	}
	if out, _, err := health("--url", tlsSrv.URL+"/readyz", "--ca", caFile); err != nil || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("https with --ca: %v %q", err, out)
	}
}

// A command that ends on a recovered defect (the intake journal's recovery
// at start, say) prints its stack; any other error only its text.
func TestReport(t *testing.T) {
	start := func() (err error) {
		defer defect.Catch("internal error in hiegw while recovering the intake journal", &err)
		var m map[string]int
		m["x"]++
		return nil
	}
	var buf bytes.Buffer
	report(&buf, fmt.Errorf("store: %w", start()))
	if out := buf.String(); !strings.HasPrefix(out, "hiegw: store: internal error in hiegw while recovering") ||
		!strings.Contains(out, "please report it") || !strings.Contains(out, "goroutine ") {
		t.Errorf("defect reported as:\n%s", out)
	}
	buf.Reset()
	report(&buf, errors.New("mllp.addr: not a host:port"))
	if out := buf.String(); out != "hiegw: mllp.addr: not a host:port\n" {
		t.Errorf("plain error reported as %q", out)
	}
}

// TestBackupCommand: hiegw backup copies a store in use into a new
// directory that opens as a store with the same messages; without --to,
// or on PostgreSQL, it refuses.
func TestBackupCommand(t *testing.T) {
	ctx := context.Background()
	dir, db := openDataDir(t)
	e := &store.Envelope{ID: "e1", Channel: "mllp", Sender: "A", ReceivedAt: time.Now(), Kind: "hl7v2", ControlID: "C1",
		DedupKey: "msh10:C1", SHA256: "x", Status: "received", Raw: []byte("MSH|^~\\&|A")}
	if _, err := db.InsertEnvelopes(ctx, []*store.Envelope{e}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetEnvelope(ctx, "e1"); err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(t.TempDir(), "b")
	var out, errb bytes.Buffer
	if err := run(ctx, []string{"backup", "--data-dir", dir, "--to", to}, &out, &errb); err != nil {
		t.Fatalf("backup: %v %s", err, errb.String())
	}
	if !strings.Contains(out.String(), "intake.db\t") || !strings.Contains(out.String(), "written to "+to) {
		t.Fatalf("output %q", out.String())
	}
	restored, err := store.Open(ctx, store.Options{DataDir: to})
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Close()
	if got, err := restored.GetEnvelope(ctx, "e1"); err != nil || string(got.Raw) != "MSH|^~\\&|A" {
		t.Fatalf("restored envelope: %+v %v", got, err)
	}
	if err := run(ctx, []string{"backup", "--data-dir", dir}, &out, &errb); err == nil {
		t.Fatal("backup without --to succeeded")
	}
	t.Setenv("HIEGW_POSTGRES_DSN", "postgres://nobody@127.0.0.1:1/x?sslmode=disable")
	if err := run(ctx, []string{"backup", "--data-dir", dir, "--to", t.TempDir()}, &out, &errb); err == nil ||
		!strings.Contains(err.Error(), "pg_dump") {
		t.Fatalf("backup of a PostgreSQL store: %v", err)
	}
}
