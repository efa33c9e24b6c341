package balancer

import (
	"strings"
	"testing"
	"time"
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
