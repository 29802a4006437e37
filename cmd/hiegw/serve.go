package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"

	"github.com/hiegw/hiegw/internal/config"
	"github.com/hiegw/hiegw/internal/gateway"
)

func runServe(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, err := config.Load(args, os.Getenv, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	gc := gcDefault(os.Getenv)
	limit := cpuLimit("/")
	procs := procsDefault(os.Getenv, limit)
	log.Info("starting hiegw", "version", version, "data_dir", cfg.DataDir, "gogc", gc, "gomaxprocs", procs,
		"cpu_limit", limit)
	cfg.Version = version
	g, err := gateway.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	// SIGHUP reads the configuration again for what can change while
	// running (API tokens, mllp.allow, mllp.senders and ack_routes,
	// sftp.accounts), from the same file,
	// environment and flags.
	g.SetConfigSource(func() (*config.Config, error) { return config.Load(args, os.Getenv, io.Discard) })
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = g.Reload()
			}
		}
	}()
	return g.Run(ctx)
}

// servingGCPercent is the garbage collector's target for `hiegw serve`
// unless GOGC says otherwise: the heap may grow to three times what is live
// between collections instead of twice. Draining a backlog of ADT^A01 on two
// cores, it took the median CPU per message from 497 to 409 µs and
// processed/s from 1,864 to 2,208, for 15-30 MB more resident memory at the
// peak (README, "Figures measured"); 400 gave no more and twice the memory.
const servingGCPercent = 200

// gcDefault sets the collector's target to servingGCPercent when GOGC is
// not set (GOGC, and GOMEMLIMIT, are the operator's to choose) and returns
// the target in force.
func gcDefault(getenv func(string) string) string {
	if v := getenv("GOGC"); v != "" {
		return v
	}
	debug.SetGCPercent(servingGCPercent)
	return strconv.Itoa(servingGCPercent)
}

// spareProcs is how many more Go processors (Ps) `hiegw serve` runs than
// the runtime would, unless GOMAXPROCS says otherwise or a CPU limit
// applies. A goroutine in a blocking system call keeps its P until the
// runtime's monitor notices (20 µs to 10 ms later), and the gateway spends
// much of its time there: the journal's fdatasync before each ACK (0.1-0.2 ms
// here), and the embedded store's writes. Meanwhile a sender's next message,
// woken from the network, waited for a P. On two cores, with processing
// running, one connection got 1,410-1,785 ACKs/s against 1,123-1,577 (higher
// in 8 rounds of 9) and eight connections 4,787-5,738 against 3,352-3,941; a
// backlog drained with nothing arriving went 2,078-2,876 messages/s against
// 2,642-3,099, idle Ps spinning on the cores the work needs (README, "Figures
// measured").
//
// Under a CPU limit below the machine's CPUs (a container's), a spinning P
// spends the limit itself. With a limit of one CPU on this two-core machine
// and processing running, the runtime's two Ps processed 6-30 % more
// messages a second than four (two spare) in 6 runs of 6 and answered more
// ACKs in 5 of 6 (one and eight connections); with processing paused the two
// were within noise. So under such a limit the runtime's own number stands.
const spareProcs = 2

// procsDefault sets GOMAXPROCS to the runtime's value (the CPUs this process
// may use) plus spareProcs when GOMAXPROCS is not set and no CPU limit below
// the machine's CPUs applies (limit: cpuLimit's answer), and returns the
// value in force.
func procsDefault(getenv func(string) string, limit float64) int {
	if getenv("GOMAXPROCS") != "" || limit > 0 && limit < float64(runtime.NumCPU()) {
		return runtime.GOMAXPROCS(0)
	}
	n := runtime.GOMAXPROCS(0) + spareProcs
	runtime.GOMAXPROCS(n)
	return n
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
