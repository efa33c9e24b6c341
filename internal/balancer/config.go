package balancer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"

	"loadlab/internal/yamlfile"
)

// LoadConfig reads a balancer configuration from a YAML file:
//
//	listen: ":44444"
//	mode: tcp
//	algo: roundrobin
//	backends:
//	  - 127.0.0.1:9002
//	  - {addr: 127.0.0.1:9003, weight: 2}
//	check: {kind: http, path: /, interval: 2s, rise: 2, fall: 3}
//	connect_timeout: 2s
//	admin: {listen: 127.0.0.1:9000, token: s3cret}
//
// docs/CONFIG.md lists every key. Unknown keys are errors, so a typo is
// not silently ignored; every error names the line and the key.
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %v", path, errors.Unwrap(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %v", path, err)
	}
	if len(data) > MaxConfigSize {
		return Config{}, fmt.Errorf("config %s: larger than %d MiB; no real balancer needs that much", path, MaxConfigSize>>20)
	}
	return ParseConfig(data, path)
}

// MaxConfigSize bounds a configuration file: ample for MaxBackends, and
// small enough that loading one never stalls a reload.
const MaxConfigSize = 4 << 20

// ParseConfig reads YAML configuration; name is used in errors.
func ParseConfig(data []byte, name string) (Config, error) {
	var cfg Config
	if err := yamlfile.Decode(data, &cfg, "docs/CONFIG.md"); err != nil {
		return Config{}, fmt.Errorf("config %s: %v", name, err)
	}
	return cfg, nil
}

// YAML is the configuration as a file that loads back to it.
func (c *Config) YAML() string { return yamlfile.Encode(*c) }

// Keys are every key a configuration file takes, as paths
// ("check.interval", "backends[].addr"), for docs/CONFIG.md's test.
func Keys() []string { return yamlfile.Keys(reflect.TypeOf(Config{})) }

// ParseScalar reads a backend as the flag writes it,
// "addr[,weight=N][,maxconn=N][,backup]", which a file may give instead of a map.
func (b *BackendConfig) ParseScalar(s string) error {
	c, err := ParseBackend(s)
	if err != nil {
		return err
	}
	*b = c
	return nil
}

// FormatScalar writes a backend as the flag takes it.
func (b BackendConfig) FormatScalar() string {
	s := b.Addr
	if b.Weight > 1 {
		s += fmt.Sprintf(",weight=%d", b.Weight)
	}
	if b.MaxConn > 0 {
		s += fmt.Sprintf(",maxconn=%d", b.MaxConn)
	}
	if b.Backup {
		s += ",backup"
	}
	return s
}
