package yamlfile

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

type endpoint struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
}

func (e *endpoint) ParseScalar(s string) error {
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("%q: want host:port", s)
	}
	_, err := fmt.Sscan(port, &e.Port)
	e.Host = host
	return err
}

func (e endpoint) FormatScalar() string { return fmt.Sprintf("%s:%d", e.Host, e.Port) }

type file struct {
	Name    string        `yaml:"name"`
	Every   time.Duration `yaml:"every"`
	Share   float64       `yaml:"share"`
	On      bool          `yaml:"on"`
	Levels  []int         `yaml:"levels"`
	Targets []endpoint    `yaml:"targets"`
	Inner   group         `yaml:"inner"`
	Groups  []group       `yaml:"groups"`
	hidden  int
}

type group struct {
	Args []string `yaml:"args"`
}

func TestDecodeSpeaksOfTheFile(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"every: 2\n", "line 1: every: want a duration such as 2s or 500ms, got 2"},
		{"levels: 5\n", "line 1: levels: want a list, got 5"},
		{"levels: [1, x]\n", "line 1: levels[1]: want a whole number, got x"},
		{"share: lots\n", "line 1: share: want a number, got lots"},
		{"on: maybe\n", "line 1: on: want true or false, got maybe"},
		{"name: [a]\n", "line 1: name: want a string, got a list"},
		{"nmae: x\n", "line 1: unknown key nmae (keys here: name, every, share, on, levels, targets, inner, groups; docs/X.md has them all)"},
		{"inner:\n  arg: [a]\n", "line 2: unknown key inner.arg (keys under inner: args; docs/X.md has them all)"},
		{"name: a\nname: b\n", "line 2: name is given twice"},
		{"targets: [nocolon]\n", `line 1: targets[0]: "nocolon": want host:port`},
		{"inner: 3\n", "line 1: inner: want a map of keys (args), got 3"},
		{"- 1\n", "line 1: the file: want a map of keys"},
		{"name: [\n", "line 1: did not find expected node content"},
		{"hidden: 1\n", "line 1: unknown key hidden"},
	} {
		var f file
		err := Decode([]byte(tc.in), &f, "docs/X.md")
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want one line starting %q", tc.in, err, tc.want)
		}
	}
}

// Aliases are followed, but a file they would make ten times as long as
// written is refused: nested ones grow it by a factor at each level.
func TestDecodeBoundsAliases(t *testing.T) {
	var f file
	if err := Decode([]byte("levels: &l [1, 2, 3]\ninner: {args: &a [x, y]}\n"), &f, "docs/X.md"); err != nil || len(f.Levels) != 3 {
		t.Fatalf("anchors: %v %+v", err, f)
	}
	words := strings.TrimSuffix(strings.Repeat("w, ", 300), ", ")
	bomb := "inner: {args: &a [" + words + "]}\ngroups: [" + strings.TrimSuffix(strings.Repeat("{args: *a}, ", 300), ", ") + "]\n"
	err := Decode([]byte(bomb), &f, "docs/X.md")
	if err == nil || !strings.Contains(err.Error(), "its aliases make the file more than ten times as long as written") {
		t.Errorf("300 aliases of a 300-word list: %v", err)
	}
}

// What Encode writes, Decode reads back to the same value, durations and
// scalars as a user writes them and lists of words on one line.
func TestEncodeRoundTrip(t *testing.T) {
	want := file{Name: "{b1}", Every: 1500 * time.Millisecond, Share: 0.05, On: true, Levels: []int{1, 5, 10},
		Targets: []endpoint{{"127.0.0.1", 9002}, {"a", 1}}}
	want.Inner.Args = []string{"--model", "async", "{port}"}
	text := Encode(want)
	var got file
	if err := Decode([]byte(text), &got, "docs/X.md"); err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n%s\n got %+v\nwant %+v", text, got, want)
	}
	for _, line := range []string{"every: 1.5s", "levels: [1, 5, 10]", "- 127.0.0.1:9002", "args: [--model, async, '{port}']"} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("no line %q in\n%s", line, text)
		}
	}
}

func TestKeys(t *testing.T) {
	got := strings.Join(Keys(reflect.TypeOf(file{})), " ")
	if want := "name every share on levels targets targets[].host targets[].port inner inner.args groups groups[].args"; got != want {
		t.Errorf("keys %q, want %q", got, want)
	}
}
