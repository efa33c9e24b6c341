package lab

import (
	"loadlab/internal/testutil"
	"testing"
)

// Every key an experiment file takes has its row in docs/CONFIG.md's
// section on the lab: a field added to Config without one fails here.
func TestConfigMDListsEveryKey(t *testing.T) {
	testutil.KeysHaveRows(t, "../../docs/CONFIG.md", "# loadlab lab: the experiment", Keys())
}

// A mistake in an experiment file is one line that speaks of the file:
// its line, the key as written, what was wanted and what was found.
func TestConfigErrorsSpeakOfTheFile(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"requests: lots\n", "config my.yaml: line 1: requests: want a whole number, got lots"},
		{"requests: 10\nlevels: 5\n", "config my.yaml: line 2: levels: want a list, got 5"},
		{"requests: 10\nlevels: [1]\ntimeout: 2\n", "config my.yaml: line 3: timeout: want a duration such as 2s or 500ms, got 2"},
		{"requests: 10\nlevels: [1]\nsystems:\n  - {name: a, url: 'http://127.0.0.1:1/', procesess: []}\n",
			"config my.yaml: line 4: unknown key systems[0].procesess (keys under systems[0]: name, title, lab_table, peer, keep_alive, rate, path, processes, target, url, tls, plain, levels, runs_per_round; docs/CONFIG.md has them all)"},
		{"requests: 10\nrequests: 20\n", "config my.yaml: line 2: requests is given twice"},
		// A name is part of the report's file names: a slash in it lost the
		// whole run at its end ("open runs/a/b-c1.txt: no such file").
		{"requests: 10\nlevels: [1]\nsystems:\n  - {name: a/b, url: 'http://127.0.0.1:1/'}\n",
			`config my.yaml: system "a/b": a name is letters, digits, '.', '-' and '_', starting with a letter or digit: it names the system's files in the report's runs/`},
		{"requests: 10\nlevels: [1]\nsystems:\n  - {name: ../x, url: 'http://127.0.0.1:1/'}\n",
			`config my.yaml: system "../x": a name is letters, digits, '.', '-' and '_', starting with a letter or digit: it names the system's files in the report's runs/`},
		{"requests: 10\nlevels: [1]\npath: /a b\nsystems:\n  - {name: a, url: 'http://127.0.0.1:1/'}\n",
			`config my.yaml: path "/a b": ' ' cannot be in a URL as it is; write it %-escaped (a space is %20)`},
		{"requests: 10\nlevels: [1]\nsystems:\n  - {name: a, path: '/x<y', url: 'http://127.0.0.1:1/'}\n",
			`config my.yaml: system a: path "/x<y": '<' cannot be in a URL as it is; write it %-escaped (a space is %20)`},
	} {
		_, err := Parse([]byte(tc.in), "my.yaml")
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q:\n got %v\nwant %s", tc.in, err, tc.want)
		}
	}
}

// The experiment files the scripts run load as they are.
func TestScriptsExperimentsLoad(t *testing.T) {
	for _, name := range []string{"../../scripts/lab-twins.yaml"} {
		if _, err := Load(name); err != nil {
			t.Error(err)
		}
	}
}
