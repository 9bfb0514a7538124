package main

import (
	"context"
	"fmt"
	"io"
)

func runSim(_ context.Context, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "cinderwarden sim: not implemented yet (issue 2)")
	return 3
}
