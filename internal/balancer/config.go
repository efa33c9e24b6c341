package balancer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
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
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Config{}, fmt.Errorf("config %s: %s", name, oneLine(err))
	}
	if err := decodeNode(&doc, reflect.ValueOf(&cfg).Elem(), ""); err != nil {
		return Config{}, fmt.Errorf("config %s: %v", name, err)
	}
	return cfg, nil
}

// oneLine folds yaml's multi-line error ("unmarshal errors:\n  line 1: …")
// into one line, as every error loadlab prints is.
func oneLine(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.Replace(msg, "unmarshal errors:\n", "", 1)
	return strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", ";")), " ")
}
