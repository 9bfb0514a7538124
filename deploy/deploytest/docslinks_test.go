package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading = regexp.MustCompile(`(?m)^#{1,6} (.+)$`)
	slugDrop  = regexp.MustCompile("[^a-z0-9 _-]")
)

// githubSlug is the anchor GitHub gives a heading: lower case, punctuation
// dropped, spaces to hyphens.
func githubSlug(heading string) string {
	return strings.ReplaceAll(slugDrop.ReplaceAllString(strings.ToLower(heading), ""), " ", "-")
}

// TestDocsLinks: every relative link in docs/ and deploy/README.md points
// at a file that exists, and every #anchor at a heading of that file.
func TestDocsLinks(t *testing.T) {
	files, err := filepath.Glob(repoPath("docs", "*.md"))
	if err != nil || len(files) < 5 {
		t.Fatalf("docs: %v %v", files, err)
	}
	files = append(files, repoPath("deploy", "README.md"))
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			dest := f
			if path != "" {
				dest = filepath.Join(filepath.Dir(f), path)
			}
			rel, _ := filepath.Rel(repoRoot, f)
			st, err := os.Stat(dest)
			if err != nil {
				t.Errorf("%s: link %s: %v", rel, target, err)
				continue
			}
			checked++
			if anchor == "" || st.IsDir() {
				continue
			}
			db, err := os.ReadFile(dest)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, h := range mdHeading.FindAllStringSubmatch(string(db), -1) {
				found = found || githubSlug(h[1]) == anchor
			}
			if !found {
				t.Errorf("%s: link %s: no heading with anchor #%s in %s", rel, target, anchor, filepath.Base(dest))
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d links checked", checked)
	}
}

func TestGithubSlug(t *testing.T) {
	for h, want := range map[string]string{
		"Volume options (`docker volume create -o key=value`)":      "volume-options-docker-volume-create--o-keyvalue",
		"409 Conflict from Cinder":                                  "409-conflict-from-cinder",
		"cinderwarden plugin":                                       "cinderwarden-plugin",
		`"device not found" (Mount times out waiting for the disk)`: "device-not-found-mount-times-out-waiting-for-the-disk",
	} {
		if got := githubSlug(h); got != want {
			t.Errorf("githubSlug(%q) = %q, want %q", h, got, want)
		}
	}
}
