package main

import (
	"context"
	"fmt"
	"io"
)

func runPlugin(_ context.Context, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "cinderwarden plugin: not implemented yet (issue 3)")
	return 3
}
