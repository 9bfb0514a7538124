// Command cinderwarden is one binary with subcommands: the Docker volume
// plugin, the compute-host reconciler, the OpenStack simulator and version.
// This file only dispatches; each subcommand lives in its own file and does
// wiring, not decisions.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// subcommand is one verb of the binary. run gets the arguments after the verb
// and returns the process exit code.
type subcommand struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func subcommands() []subcommand {
	return []subcommand{
		{"plugin", "serve the Docker volume plugin (one Docker volume = one Cinder volume)", runPlugin},
		{"reconcile", "diff libvirt disks against Cinder and Nova on a compute host", runReconcile},
		{"sim", "run the embedded OpenStack simulator (Keystone, Cinder, Nova, metadata)", runSim},
		{"version", "print the version", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, sc := range subcommands() {
		if sc.name == args[0] {
			return sc.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "cinderwarden: unknown subcommand %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: cinderwarden <subcommand> [flags]")
	fmt.Fprintln(w, "\nsubcommands:")
	for _, sc := range subcommands() {
		fmt.Fprintf(w, "  %-10s %s\n", sc.name, sc.summary)
	}
	fmt.Fprintln(w, "\nRun 'cinderwarden <subcommand> -h' for its flags.")
}

// parseFlags parses fs and maps -h to exit code 0 and bad flags to 2.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	return 0, true
}

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) int {
	fmt.Fprintf(stdout, "cinderwarden %s\n", version)
	return 0
}
