package balancer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// LoadConfig reads a balancer configuration from a YAML file:
//
//	listen: ":44444"
//	mode: tcp
//	algo: roundrobin
//	backends:
//	  - addr: 127.0.0.1:9002
//	  - addr: 127.0.0.1:9003
//	    weight: 2
//	check: {kind: http, path: /, interval: 2s, rise: 2, fall: 3}
//	connect_timeout: 2s
//
// Unknown keys are errors, so a typo is not silently ignored.
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
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("config %s: %s", name, oneLine(err))
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
