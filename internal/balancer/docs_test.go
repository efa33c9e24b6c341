package balancer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every key a configuration file takes has its row in docs/CONFIG.md: a
// field added to Config without one fails here.
func TestConfigMDListsEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range Keys() {
		if !strings.Contains(string(doc), "\n| `"+key+"` |") {
			t.Errorf("docs/CONFIG.md has no row for %s", key)
		}
	}
}

// Every example loads and is valid, so that none can rot.
func TestExamplesLoad(t *testing.T) {
	files, _ := filepath.Glob("../../examples/balance/*.yaml")
	if len(files) < 4 {
		t.Fatalf("%d examples in examples/balance", len(files))
	}
	for _, f := range files {
		cfg, err := LoadConfig(f)
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
