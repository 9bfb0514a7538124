package dockertest

import (
	"context"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
)

// TestImportedImageRuns proves the substrate the e2e tests stand on: a real
// dockerd, and a busybox image imported without any registry.
func TestImportedImageRuns(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "busybox")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var cli CLI
	if err := cli.EnsureImage(ctx, "/bin/busybox"); err != nil {
		t.Fatal(err)
	}
	out, err := cli.Run(ctx, "run", "--rm", "--network", "none", Image, "sh", "-c", "echo hi > /tmp/f && cat /tmp/f")
	if err != nil {
		t.Fatal(err)
	}
	if out != "hi" {
		t.Fatalf("container printed %q, want %q", out, "hi")
	}
}
