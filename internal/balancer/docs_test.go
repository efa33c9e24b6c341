package balancer

import (
	"loadlab/internal/testutil"
	"path/filepath"
	"testing"
)

// Every key a configuration file takes has its row in docs/CONFIG.md: a
// field added to Config without one fails here.
func TestConfigMDListsEveryKey(t *testing.T) {
	testutil.KeysHaveRows(t, "../../docs/CONFIG.md", "# loadlab balance: the configuration", Keys())
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
