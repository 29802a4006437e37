// Command hiegw is the health information exchange gateway.
//
//	hiegw serve            run the gateway (embedded defaults on 127.0.0.1)
//	hiegw send FILE...     send HL7 v2 messages over MLLP and print each ACK
//	hiegw mappings check   validate mapping files
//	hiegw mappings test    dry-run a message through the mappings
//	hiegw mpi eval FILE... measure patient matching on a linkage data set
//	hiegw replay           re-publish a subscriber's events since a time, or requeue failed messages (--failed)
//	hiegw token            make an API token and its configuration hash
//	hiegw version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/hiegw/hiegw/internal/defect"
	"github.com/hiegw/hiegw/internal/mapping"
)

// version is set at build time with -ldflags "-X main.version=..."; a
// build without it names the commit it was built from, when Go recorded it.
var version = "dev"

func init() {
	if version != "dev" {
		return
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-modified"
			}
		}
	}
	if len(rev) >= 12 {
		version = "dev+" + rev[:12] + dirty
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		if !errors.Is(err, flag.ErrHelp) {
			report(os.Stderr, err)
		}
		os.Exit(2)
	}
}

// report prints the error a command ended with, as reportErr does.
func report(w io.Writer, err error) {
	fmt.Fprint(w, "hiegw: ")
	reportErr(w, err)
}

// reportErr prints err and, for a defect of hiegw it recovered from
// (defect.Error: say in the journal's recovery at start; a mapping.MapError
// with a stack: compiling the set, mapping a message), the stack to send
// with a report: the input, the configuration or the analyst's files are
// not at fault then.
func reportErr(w io.Writer, err error) {
	fmt.Fprintln(w, err)
	stack := defect.StackOf(err)
	if me := (*mapping.MapError)(nil); stack == nil && errors.As(err, &me) {
		stack = me.Stack
	}
	if stack != nil {
		fmt.Fprintf(w, "\nThis is a defect of hiegw, not of the input or the configuration: please report it with this stack.\n%s", stack)
	}
}

// exitCode ends the program with a status and no further message (the
// command already printed what went wrong).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const usage = `usage: hiegw <command> [flags]

commands:
  serve                 run the gateway (MLLP, SFTP, HTTP, embedded store and broker by default)
  send FILE...          send HL7 v2 messages over MLLP; one line per ACK; load test with --repeat/--connections
  mappings check [DIR]  check mapping files; every error with file, line and column
  mappings test FILE    print the FHIR Bundle a message or document would produce (writes nothing)
  mpi eval FILE...      measure patient matching (precision, recall, F1) on a linkage data set
  replay                re-publish a subscriber's events since a time; --failed: requeue failed messages
  backup --to DIR       copy the embedded store into DIR while the gateway runs
  token                 make an API bearer token and the hash to configure for it
  health                exit 0 if a running gateway is ready (GET /readyz), 1 with its answer if not
  version               print the version

Run "hiegw <command> -h" for the flags of a command.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitCode(2)
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "send":
		return runSend(ctx, args[1:], stdout, stderr)
	case "mappings":
		return runMappings(ctx, args[1:], stdout, stderr)
	case "mpi":
		return runMPI(ctx, args[1:], stdout, stderr)
	case "replay":
		return runReplay(ctx, args[1:], stdout, stderr)
	case "backup":
		return runBackup(ctx, args[1:], stdout, stderr)
	case "token":
		return runToken(stdout)
	case "health":
		return runHealth(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "hiegw %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "hiegw: unknown command %q\n\n%s", args[0], usage)
	return exitCode(2)
}
