package reconciler

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteJSON writes r as indented JSON. The output is stable: findings and
// actions are in Plan's sorted order, maps are sorted by key, empty lists
// are [] rather than null.
func WriteJSON(w io.Writer, r Result) error {
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	if r.Actions == nil {
		r.Actions = []Action{}
	}
	for i := range r.Actions {
		if r.Actions[i].Preconditions == nil {
			r.Actions[i].Preconditions = []Precondition{}
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write reconcile result as JSON: %w", err)
	}
	return nil
}

// WriteTable writes r for humans: a header (host, time, mode, sources, abort
// reasons), the findings, then the actions with their state and reason.
func WriteTable(w io.Writer, r Result) error {
	var b strings.Builder
	mode := "apply"
	if r.DryRun {
		mode = "dry-run"
	}
	fmt.Fprintf(&b, "host %s at %s (%s)\n", quoteOr(r.Host, "?"), r.Time.UTC().Format(time.RFC3339), mode)
	names := make([]string, 0, len(r.Sources))
	for n := range r.Sources {
		names = append(names, n)
	}
	slices.Sort(names)
	var srcs []string
	for _, n := range names {
		s := r.Sources[n]
		st := n + " " + quoteOr(string(s.State), "unreported")
		if s.Reason != "" {
			st += " (" + s.Reason + ")"
		}
		srcs = append(srcs, st)
	}
	fmt.Fprintf(&b, "sources: %s\n", strings.Join(srcs, ", "))
	if r.Aborted {
		fmt.Fprintf(&b, "ABORTED, no action may run:\n")
		for _, reason := range r.AbortReasons {
			fmt.Fprintf(&b, "  - %s\n", reason)
		}
	}

	if len(r.Findings) == 0 {
		fmt.Fprintf(&b, "\nno findings\n")
	} else {
		fmt.Fprintf(&b, "\nfindings: %d\n", len(r.Findings))
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEVERITY\tCLASS\tWHERE\tVOLUME\tDISK\tSEEN\tDETAIL")
		for _, f := range r.Findings {
			where := nameOr(f.DomainName, f.Domain)
			if f.Mountpoint != "" {
				where = f.Mountpoint
			}
			seen := fmt.Sprint(f.Sightings)
			detail := f.Detail
			if f.Skipped != "" {
				seen = "-"
				detail += " [skipped: " + f.Skipped + "]"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Severity, f.Class, dash(where), dash(f.Volume), dash(f.Disk), seen, detail)
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("write reconcile table: %w", err)
		}
	}

	if len(r.Actions) > 0 {
		fmt.Fprintf(&b, "\nactions: %d\n", len(r.Actions))
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STATE\tACTION\tTARGET\tREASON")
		for _, a := range r.Actions {
			kind := string(a.Kind)
			if a.Kind == ActionLibvirtDetach {
				var defs []string
				if a.Config {
					defs = append(defs, "config")
				}
				if a.Live {
					defs = append(defs, "live")
				}
				if a.LiveRetry {
					defs = append(defs, "retry")
				}
				kind += "(" + strings.Join(defs, "+") + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.State, kind, a.Target(), dash(a.Reason))
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("write reconcile table: %w", err)
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write reconcile table: %w", err)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
