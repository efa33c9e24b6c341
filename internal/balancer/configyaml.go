package balancer

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The configuration's YAML, read and written by walking Config's fields
// by their yaml tags. yaml's own decoder speaks of Go types
// ("cannot unmarshal !!int `2` into time.Duration"); this one speaks of
// the file: the line, the key as the user wrote its path, what was
// wanted and what was found. It also takes a backend as the flag writes
// it ("127.0.0.1:9002,weight=3") or as a map, and writes durations as
// durations ("2s"), so that what --print-config prints loads again.

var (
	durationType = reflect.TypeOf(time.Duration(0))
	backendType  = reflect.TypeOf(BackendConfig{})
)

// decodeNode fills v from n; path is the key's place ("check.interval")
// for errors.
func decodeNode(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Tag == "!!null" {
		return nil // "key:" with nothing: the default
	}
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil {
			return wrongType(n, path, "a duration such as 2s or 500ms")
		}
		v.SetInt(int64(d))
		return nil
	case v.Type() == backendType && n.Kind == yaml.ScalarNode:
		addr, weight, err := ParseBackend(n.Value)
		if err != nil {
			return fmt.Errorf("line %d: %s: %v", n.Line, path, err)
		}
		v.Set(reflect.ValueOf(BackendConfig{Addr: addr, Weight: weight}))
		return nil
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return wrongType(n, path, "a map of keys ("+strings.Join(yamlKeys(v.Type()), ", ")+")")
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			if seen[key.Value] {
				return fmt.Errorf("line %d: %s is given twice", key.Line, join(path, key.Value))
			}
			seen[key.Value] = true
			f, ok := fieldByKey(v, key.Value)
			if !ok {
				return fmt.Errorf("line %d: unknown key %s (%s)", key.Line, join(path, key.Value), keysHint(path, v.Type()))
			}
			if err := decodeNode(val, f, join(path, key.Value)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return wrongType(n, path, "a list")
		}
		out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := decodeNode(item, out.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(out)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return wrongType(n, path, "a string")
		}
		v.SetString(n.Value)
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(n.Value, 10, 64)
		if n.Kind != yaml.ScalarNode || err != nil || v.OverflowInt(i) {
			return wrongType(n, path, "a whole number")
		}
		v.SetInt(i)
	case reflect.Float64:
		f, err := strconv.ParseFloat(n.Value, 64)
		if n.Kind != yaml.ScalarNode || err != nil {
			return wrongType(n, path, "a number")
		}
		v.SetFloat(f)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			return wrongType(n, path, "true or false")
		}
		v.SetBool(b)
	default:
		return fmt.Errorf("line %d: %s cannot be set in a file", n.Line, path)
	}
	return nil
}

// wrongType says what a key wanted and what it got.
func wrongType(n *yaml.Node, path, want string) error {
	got := n.Value
	switch n.Kind {
	case yaml.MappingNode:
		got = "a map"
	case yaml.SequenceNode:
		got = "a list"
	}
	if path == "" {
		path = "the file"
	}
	return fmt.Errorf("line %d: %s: want %s, got %s", n.Line, path, want, got)
}

// fieldByKey is the field of struct v whose yaml tag is key.
func fieldByKey(v reflect.Value, key string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" && name == key {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// yamlName is a field's key in the file, "" for one that is not in it.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || name == "" || !f.IsExported() {
		return ""
	}
	return name
}

// yamlKeys are the keys a struct type takes, in its order.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			keys = append(keys, name)
		}
	}
	return keys
}

func keysHint(path string, t reflect.Type) string {
	where := "here"
	if path != "" {
		where = "under " + path
	}
	return "keys " + where + ": " + strings.Join(yamlKeys(t), ", ") + "; docs/CONFIG.md has them all"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// encodeNode is v as YAML: keys in the struct's order, durations as
// durations, backends as the flag writes them, empty values left out.
func encodeNode(v reflect.Value) *yaml.Node {
	switch {
	case v.Type() == durationType:
		return scalar(time.Duration(v.Int()).String())
	case v.Type() == backendType:
		b := v.Interface().(BackendConfig)
		if b.Weight > 1 {
			return scalar(fmt.Sprintf("%s,weight=%d", b.Addr, b.Weight))
		}
		return scalar(b.Addr)
	}
	switch v.Kind() {
	case reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode}
		for i := range v.NumField() {
			name := yamlName(v.Type().Field(i))
			if name == "" || v.Field(i).IsZero() {
				continue
			}
			m.Content = append(m.Content, scalar(name), encodeNode(v.Field(i)))
		}
		if len(m.Content) == 0 {
			m.Style = yaml.FlowStyle
		}
		return m
	case reflect.Slice:
		s := &yaml.Node{Kind: yaml.SequenceNode}
		for i := range v.Len() {
			s.Content = append(s.Content, encodeNode(v.Index(i)))
		}
		return s
	case reflect.String:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v.String()}
	}
	return scalar(fmt.Sprint(v.Interface()))
}

func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s} }

// YAML is the configuration as a file that loads back to it.
func (c *Config) YAML() string {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(encodeNode(reflect.ValueOf(*c))); err != nil {
		return "# " + err.Error() + "\n"
	}
	enc.Close()
	return b.String()
}

// Keys are every key a configuration file takes, as paths
// ("check.interval", "backends[].addr"), for docs/CONFIG.md's test.
func Keys() []string {
	var keys []string
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			p := join(path, name)
			keys = append(keys, p)
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft, p = ft.Elem(), p+"[]"
			}
			if ft.Kind() == reflect.Struct && ft != durationType {
				walk(ft, p)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return slices.Compact(keys)
}
