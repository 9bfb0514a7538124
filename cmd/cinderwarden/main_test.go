package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	cases := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{[]string{"version"}, 0, "cinderwarden ", ""},
		{nil, 2, "", "usage: cinderwarden"},
		{[]string{"bogus"}, 2, "", `unknown subcommand "bogus"`},
		{[]string{"help"}, 0, "", "subcommands:"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		code := dispatch(context.Background(), c.args, &out, &errOut)
		if code != c.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", c.args, code, c.code, errOut.String())
		}
		if !strings.Contains(out.String(), c.inStdout) {
			t.Errorf("%v: stdout %q lacks %q", c.args, out.String(), c.inStdout)
		}
		if !strings.Contains(errOut.String(), c.inStderr) {
			t.Errorf("%v: stderr %q lacks %q", c.args, errOut.String(), c.inStderr)
		}
	}
}
