package loopnode_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cinderwarden/cinderwarden/simcloud/loopnode"
)

// A child process started by TestAttachRacesAcrossProcesses runs
// attachInChild instead of the tests: it attaches perChild volumes in
// parallel and prints their devices, one a line.
const (
	childDirEnv   = "LOOPNODE_TEST_CHILD_DIR"
	childIndexEnv = "LOOPNODE_TEST_CHILD_INDEX"
	perChild      = 4
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childDirEnv); dir != "" {
		os.Exit(attachInChild(dir, os.Getenv(childIndexEnv)))
	}
	os.Exit(m.Run())
}

func childVolume(child, i int) string { return volume(100 + child*perChild + i) }

func attachInChild(dir, index string) int {
	child, err := strconv.Atoi(index)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad child index:", err)
		return 2
	}
	b := loopnode.New(loopnode.Options{})
	devs := make([]string, perChild)
	errs := make([]error, perChild)
	var wg sync.WaitGroup
	for i := range perChild {
		a := attachment(dir, childVolume(child, i), "proc-"+index, 1)
		wg.Go(func() { devs[i], errs[i] = b.AttachVolume(context.Background(), a) })
	}
	wg.Wait()
	for i := range perChild {
		if errs[i] != nil {
			fmt.Fprintln(os.Stderr, errs[i])
			return 1
		}
		fmt.Println(devs[i])
	}
	return 0
}

// Two processes attaching at the same time race for the same free loop
// devices; each attachment still gets its own. The parent, which attached
// nothing itself (as after a restart), then detaches them all, finding each
// device from sysfs and its tag alone.
func TestAttachRacesAcrossProcesses(t *testing.T) {
	n := newNode(t)
	const children = 2
	outs := make([]strings.Builder, children)
	cmds := make([]*exec.Cmd, children)
	for c := range children {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childDirEnv+"="+n.dir, childIndexEnv+"="+strconv.Itoa(c))
		cmd.Stdout, cmd.Stderr = &outs[c], os.Stderr
		cmds[c] = cmd
	}
	for _, cmd := range cmds {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for c, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v", c, err)
		}
		lines := strings.Fields(outs[c].String())
		if len(lines) != perChild {
			t.Fatalf("child %d printed %q, want %d devices", c, lines, perChild)
		}
		for i, dev := range lines {
			if seen[dev] {
				t.Errorf("device %s handed out twice", dev)
			}
			seen[dev] = true
			assertLink(t, attachment(n.dir, childVolume(c, i), "proc-"+strconv.Itoa(c), 1), dev)
		}
	}
	if devs := n.devices(); len(devs) != children*perChild {
		t.Fatalf("Devices = %+v, want %d", devs, children*perChild)
	}

	for c := range children {
		for i := range perChild {
			a := attachment(n.dir, childVolume(c, i), "proc-"+strconv.Itoa(c), 1)
			n.detach(a)
			assertNoLink(t, a)
		}
	}
	if devs := n.devices(); len(devs) != 0 {
		t.Fatalf("after detach Devices = %+v", devs)
	}
}
