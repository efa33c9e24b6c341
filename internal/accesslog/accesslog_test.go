package accesslog

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"loadlab/internal/testutil"
)

func TestJSONLinesReachTheWriterOnClose(t *testing.T) {
	var out testutil.Buffer
	log, buf, err := New(&out, FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		log.Info("request", "status", 200+i, "path", "/")
	}
	buf.Close()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got %q", out.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[2]), &rec); err != nil || rec["status"] != 202.0 {
		t.Errorf("last line %q: %v", lines[2], err)
	}
}

func TestTextFormatAndUnknownFormat(t *testing.T) {
	var out testutil.Buffer
	log, buf, _ := New(&out, FormatText)
	log.Info("request", "path", "/santai")
	buf.Flush()
	if !strings.Contains(out.String(), "path=/santai") {
		t.Errorf("text line: %q", out.String())
	}
	buf.Close()
	if _, _, err := New(&out, "xml"); err == nil || !strings.Contains(err.Error(), "text or json") {
		t.Errorf("unknown format: %v", err)
	}
}

func TestLargeWritesFlushSoon(t *testing.T) {
	var out testutil.Buffer
	b := NewBuffer(&out, 1<<30) // never by time
	defer b.Close()
	b.Write(bytes.Repeat([]byte("x"), flushAt))
	testutil.Eventually(t, 10*time.Second, "64 KiB written out without waiting for the interval", func() bool {
		return len(out.String()) == flushAt
	})
}

// A line reaches the writer an interval after it was written, with no
// Close or Flush, and so does one written once that flush has emptied
// the buffer.
func TestLinesFlushByTime(t *testing.T) {
	var out testutil.Buffer
	b := NewBuffer(&out, 10*time.Millisecond)
	defer b.Close()
	for _, line := range []string{"first\n", "second\n"} {
		b.Write([]byte(line))
		testutil.Eventually(t, 10*time.Second, line+" written out by time", func() bool {
			return strings.HasSuffix(out.String(), line)
		})
	}
	if out.String() != "first\nsecond\n" {
		t.Errorf("got %q", out.String())
	}
}

// stuckWriter never returns from Write, as a pipe nobody reads.
type stuckWriter struct{ release chan struct{} }

func (w stuckWriter) Write(p []byte) (int, error) { <-w.release; return len(p), nil }

// A writer that never takes its lines holds up neither Write nor Close:
// lines past the bound are dropped and counted.
func TestStuckWriterNeverBlocks(t *testing.T) {
	w := stuckWriter{make(chan struct{})}
	defer close(w.release)
	log, b, _ := New(w, FormatText)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50000 { // about 4 MB of lines
			log.Info("request", "path", "/payload-100k.bin", "status", 200)
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("logging blocked behind a writer that does not take its lines")
	}
	if b.Dropped() == 0 {
		t.Error("no line counted as dropped, with 4 MB behind a stuck writer")
	}
	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited for the stuck writer")
	}
}
