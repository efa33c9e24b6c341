package balancer

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"loadlab/internal/tlsx"
)

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
listen: ":44444"
mode: http
algo: weighted
backends:
  - addr: 127.0.0.1:9002
  - addr: 127.0.0.1:9003
    weight: 3
check: {kind: http, path: /santai, interval: 500ms, rise: 1, fall: 2}
connect_timeout: 1s
max_conns: 100
send_proxy: v2
`), "lb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Mode != "http" || cfg.Backends[1].Weight != 3 || cfg.Check.Interval != 500*time.Millisecond ||
		cfg.ConnectTimeout != time.Second || cfg.SendProxy != "v2" || cfg.Retries != DefaultRetries {
		t.Errorf("parsed %+v", cfg)
	}
	for _, bad := range []string{
		"listen: [oops",
		"lisen: :44444\n",                       // a typo is an error, not ignored
		"backends:\n  - addr: nohostport\n",     // caught by Validate
		"mode: udp\nbackends:\n  - addr: a:1\n", // caught by Validate
		"check: {kind: icmp}\nbackends:\n  - addr: a:1\n",
	} {
		cfg, err := ParseConfig([]byte(bad), "bad.yaml")
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: want a one-line error, got %v", bad, err)
		}
	}
}

// FuzzConfig checks that no file makes the loader or the validator panic.
func FuzzConfig(f *testing.F) {
	f.Add([]byte("listen: :1\nbackends:\n  - addr: 127.0.0.1:9002\n    weight: 2\ncheck: {kind: http}\n"))
	f.Add([]byte("mode: http\nalgo: p2c\nresolve_every: 1s\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data, "fuzz.yaml")
		if err == nil {
			cfg.Validate()
		}
	})
}

// Errors speak of the file: the line, the key's path, what it wants and
// what it got; backends come as the flag writes them or as maps; admin
// settings are keys of their own.
func TestConfigInTheUsersTerms(t *testing.T) {
	cfg, err := ParseConfig([]byte(`backends:
  - 127.0.0.1:9002
  - 127.0.0.1:9003,weight=3
  - {addr: 127.0.0.1:9004, weight: 2}
  - 127.0.0.1:9005,backup
  - 127.0.0.1:9006, weight=2, backup
  - {addr: 127.0.0.1:9007, backup: true}
  - 127.0.0.1:9008,maxconn=30
  - {addr: 127.0.0.1:9009, maxconn: 2, backup: true}
admin: {listen: 127.0.0.1:9000, token: s3cret, user: ops}
`), "lb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []BackendConfig{{"127.0.0.1:9002", 1, false, 0}, {"127.0.0.1:9003", 3, false, 0}, {"127.0.0.1:9004", 2, false, 0},
		{"127.0.0.1:9005", 1, true, 0}, {"127.0.0.1:9006", 2, true, 0}, {"127.0.0.1:9007", 0, true, 0},
		{"127.0.0.1:9008", 1, false, 30}, {"127.0.0.1:9009", 0, true, 2}}
	if !slices.Equal(cfg.Backends, want) || cfg.Admin != (AdminConfig{"127.0.0.1:9000", "s3cret", "ops"}) {
		t.Errorf("parsed %+v", cfg)
	}
	for _, tc := range []struct{ in, want string }{
		{"backends: [127.0.0.1:9002]\ncheck:\n  interval: 2\n", "config lb.yaml: line 3: check.interval: want a duration such as 2s or 500ms, got 2"},
		{"admn: {listen: \"127.0.0.1:9000\"}\n", "config lb.yaml: line 1: unknown key admn (keys here: listen, mode,"},
		{"check: {intervall: 2s}\n", "config lb.yaml: line 1: unknown key check.intervall (keys under check: kind, path, host, expect, interval,"},
		{"backends: 127.0.0.1:9002\n", "config lb.yaml: line 1: backends: want a list, got 127.0.0.1:9002"},
		{"backends:\n  - 127.0.0.1:9002,weight=x\n", `config lb.yaml: line 2: backends[0]: backend "127.0.0.1:9002,weight=x": weight must be`},
		{"backends:\n  - 127.0.0.1:9002,backup=yes\n", `config lb.yaml: line 2: backends[0]: backend "127.0.0.1:9002,backup=yes": unknown option "backup=yes" (give weight=N, maxconn=N or backup)`},
		{"backends:\n  - 127.0.0.1:9002,maxconn=-1\n", `config lb.yaml: line 2: backends[0]: backend "127.0.0.1:9002,maxconn=-1": maxconn must be a whole number from 0 (no limit) to 1000000`},
		{"backends:\n  - 127.0.0.1:9002,spare\n", `config lb.yaml: line 2: backends[0]: backend "127.0.0.1:9002,spare": unknown option "spare"`},
		{"retries: lots\n", "config lb.yaml: line 1: retries: want a whole number, got lots"},
		{"mode: tcp\nmode: http\n", "config lb.yaml: line 2: mode is given twice"},
		{"backend_tls: {enabled: maybe}\n", "config lb.yaml: line 1: backend_tls.enabled: want true or false, got maybe"},
		{"- 1\n", "config lb.yaml: line 1: the file: want a map of keys"},
	} {
		_, err := ParseConfig([]byte(tc.in), "lb.yaml")
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s…", tc.in, err, tc.want)
		}
	}
}

// What YAML writes, ParseConfig reads back to the same configuration.
func TestConfigYAMLRoundTrip(t *testing.T) {
	cfg := Config{Listen: ":44444", Mode: "http", Algo: "sourcehash", HashBy: "sni",
		Backends:   []BackendConfig{{"127.0.0.1:9002", 1, false, 0}, {"127.0.0.1:9003", 3, false, 100}, {"127.0.0.1:9004", 1, true, 0}},
		AllBackups: true,
		Check:      CheckConfig{Kind: "http", Path: "/santai", Interval: 1500 * time.Millisecond},
		TLS:        []tlsx.Pair{{CertFile: "a.pem", KeyFile: "a.key"}},
		BackendTLS: BackendTLSConfig{Enabled: true, Insecure: true},
		Admin:      AdminConfig{Listen: "127.0.0.1:9000", Token: "s3cret"}, MaxBody: 1 << 20}
	cfg.fillDefaults()
	text := cfg.YAML()
	back, err := ParseConfig([]byte(text), "printed")
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if !reflect.DeepEqual(back, cfg) {
		t.Errorf("round trip:\n%s\n got %+v\nwant %+v", text, back, cfg)
	}
	if !strings.Contains(text, "interval: 1.5s") || !strings.Contains(text, "- 127.0.0.1:9003,weight=3") || !strings.Contains(text, "- 127.0.0.1:9004,backup") {
		t.Errorf("durations and backends not as a user writes them:\n%s", text)
	}
}
