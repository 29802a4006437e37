package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/hiegw/hiegw/internal/mpi"
)

func runMPI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "eval" {
		fmt.Fprintln(stderr, "usage: hiegw mpi eval [--scale N] FILE...")
		return exitCode(2)
	}
	fs := flag.NewFlagSet("hiegw mpi eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scale := fs.Int("scale", 0, "also index N synthetic patients and measure matching speed against them")
	queries := fs.Int("queries", 10000, "records resolved in the scale check")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: hiegw mpi eval [flags] FILE...\n\nLoads a FEBRL-style linkage data set (one file: links within it; two files: links the second against the first), runs the gateway's matcher and prints pairwise precision=, recall=, f1=, review tasks, records per second and peak memory.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 0 && *scale == 0 {
		fs.Usage()
		return exitCode(2)
	}
	return mpi.Eval(ctx, stdout, fs.Args(), mpi.EvalOptions{Scale: *scale, Queries: *queries})
}
