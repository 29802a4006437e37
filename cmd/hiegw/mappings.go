package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/hiegw/hiegw/internal/mapping"
)

func runMappings(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: hiegw mappings check [DIR] | hiegw mappings test [--dir DIR] [--sender S] FILE|DIR")
		return exitCode(2)
	}
	switch args[0] {
	case "check":
		dir := "mappings"
		if len(args) > 1 {
			dir = args[1]
		}
		if err := mapping.Check(stdout, dir); err != nil {
			reportErr(stderr, err)
			return exitCode(1)
		}
		return nil
	case "test":
		fs := flag.NewFlagSet("hiegw mappings test", flag.ContinueOnError)
		fs.SetOutput(stderr)
		dir := fs.String("dir", "mappings", "mapping directory")
		sender := fs.String("sender", "", "sender whose mappings apply (default: from MSH-4, else the defaults)")
		fs.Usage = func() {
			fmt.Fprintln(stderr, "usage: hiegw mappings test [flags] FILE|DIR\n\nFILE: print on stdout the FHIR Bundle that the message or document would produce; nothing is written anywhere.\nDIR: run the test cases in DIR (input message beside expected output) and show a diff for each failure.")
			fs.PrintDefaults()
		}
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			fs.Usage()
			return exitCode(2)
		}
		set, err := mapping.Load(*dir)
		if err != nil {
			reportErr(stderr, err)
			return exitCode(1)
		}
		target := fs.Arg(0)
		st, err := os.Stat(target)
		if err != nil {
			return err
		}
		if st.IsDir() {
			if err := mapping.RunTests(stdout, set, target); err != nil {
				fmt.Fprintln(stderr, err)
				return exitCode(1)
			}
			return nil
		}
		data, err := os.ReadFile(target)
		if err != nil {
			return err
		}
		if err := mapping.DryRun(stdout, set, *sender, data); err != nil {
			reportErr(stderr, err)
			return exitCode(1)
		}
		return nil
	}
	fmt.Fprintf(stderr, "hiegw mappings: unknown subcommand %q\n", args[0])
	return exitCode(2)
}
