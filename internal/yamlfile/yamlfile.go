// Package yamlfile reads and writes loadlab's configuration files, the
// balancer's and the lab's, by walking a struct's fields by their yaml
// tags. yaml's own decoder speaks of Go types ("cannot unmarshal !!int
// `2` into time.Duration", "field x not found in type lab.Config"); this
// one speaks of the file: the line, the key as the user wrote its path,
// what was wanted and what was found, and the keys that would have been
// right. It writes durations as durations ("2s"), so that what it writes
// loads again.
package yamlfile

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ScalarParser is a struct type the file may also give as one string,
// as a flag writes it (a backend as "127.0.0.1:9002,weight=3").
type ScalarParser interface {
	ParseScalar(s string) error
}

// ScalarFormatter is a struct type written as one string.
type ScalarFormatter interface {
	FormatScalar() string
}

var durationType = reflect.TypeOf(time.Duration(0))

// Decode fills the struct v points to from data. docs says where a user
// finds every key ("docs/CONFIG.md"), for the hint after an unknown one.
// Its errors are one line.
func Decode(data []byte, v any, docs string) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s", oneLine(err))
	}
	d := decoder{docs: docs, budget: 10*count(&doc) + 1000}
	return d.node(&doc, reflect.ValueOf(v).Elem(), "")
}

// count is how many nodes n holds as written, its aliases not followed.
func count(n *yaml.Node) int {
	c := 1
	for _, m := range n.Content {
		c += count(m)
	}
	return c
}

// oneLine folds yaml's multi-line error ("unmarshal errors:\n  line 1: …")
// into one line, as every error loadlab prints is.
func oneLine(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.Replace(msg, "unmarshal errors:\n", "", 1)
	return strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", ";")), " ")
}

// decoder walks a document. budget bounds the nodes it visits: an alias
// is read again wherever it is used, so a file of nested aliases (a list
// of a thousand processes, each with the same thousand args) could grow
// a thousandfold at each level; yaml's own decoder refuses "excessive
// aliasing" for the same reason.
type decoder struct {
	docs   string
	budget int
}

// node fills v from n; path is the key's place ("check.interval") for
// errors.
func (d *decoder) node(n *yaml.Node, v reflect.Value, path string) error {
	if d.budget--; d.budget < 0 {
		return fmt.Errorf("line %d: %s: its aliases make the file more than ten times as long as written; write the values out", n.Line, orFile(path))
	}
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
	if v.Type() == durationType {
		dur, err := time.ParseDuration(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil {
			return wrongType(n, path, "a duration such as 2s or 500ms")
		}
		v.SetInt(int64(dur))
		return nil
	}
	if p, ok := v.Addr().Interface().(ScalarParser); ok && n.Kind == yaml.ScalarNode {
		if err := p.ParseScalar(n.Value); err != nil {
			return fmt.Errorf("line %d: %s: %v", n.Line, path, err)
		}
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
				return fmt.Errorf("line %d: unknown key %s (%s)", key.Line, join(path, key.Value), d.keysHint(path, v.Type()))
			}
			if err := d.node(val, f, join(path, key.Value)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return wrongType(n, path, "a list")
		}
		out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := d.node(item, out.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
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
	return fmt.Errorf("line %d: %s: want %s, got %s", n.Line, orFile(path), want, got)
}

func orFile(path string) string {
	if path == "" {
		return "the file"
	}
	return path
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

func (d *decoder) keysHint(path string, t reflect.Type) string {
	where := "here"
	if path != "" {
		where = "under " + path
	}
	return "keys " + where + ": " + strings.Join(yamlKeys(t), ", ") + "; " + d.docs + " has them all"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Encode is the struct v as YAML that Decode reads back to it: keys in
// the struct's order, durations as durations, ScalarFormatters as their
// string, empty values left out.
func Encode(v any) string {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(encodeNode(reflect.ValueOf(v))); err != nil {
		return "# " + err.Error() + "\n"
	}
	enc.Close()
	return b.String()
}

func encodeNode(v reflect.Value) *yaml.Node {
	if v.Type() == durationType {
		return scalar(time.Duration(v.Int()).String())
	}
	if f, ok := v.Interface().(ScalarFormatter); ok {
		return scalar(f.FormatScalar())
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
		if k := v.Type().Elem().Kind(); k != reflect.Struct && k != reflect.Slice {
			s.Style = yaml.FlowStyle // numbers and words on one line: levels: [1, 5, 10]
		}
		return s
	case reflect.String:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v.String()}
	}
	return scalar(fmt.Sprint(v.Interface()))
}

func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s} }

// Keys are every key a file for struct type t takes, as paths
// ("check.interval", "backends[].addr"), for the tests that hold the
// docs to them.
func Keys(t reflect.Type) []string {
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
	walk(t, "")
	return slices.Compact(keys)
}
