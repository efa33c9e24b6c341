package testutil

import (
	"os"
	"strings"
	"testing"
)

// KeysHaveRows fails t for each key without its row ("| `key` |") in
// the section of the markdown file doc that starts at the first-level
// heading, up to the next: a configuration key added to the code
// without its documentation fails the test that calls it.
func KeysHaveRows(t testing.TB, doc, heading string, keys []string) {
	t.Helper()
	text, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut("\n"+string(text), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("%s has no heading %q", doc, heading)
	}
	section, _, _ = strings.Cut(section, "\n# ")
	for _, key := range keys {
		if !strings.Contains(section, "\n| `"+key+"` |") {
			t.Errorf("%s has no row for %s under %q", doc, key, heading)
		}
	}
}
