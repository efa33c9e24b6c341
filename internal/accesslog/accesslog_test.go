package accesslog

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a bytes.Buffer safe to write from the flush goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestJSONLinesReachTheWriterOnClose(t *testing.T) {
	var out lockedBuffer
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
	var out lockedBuffer
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

func TestLargeWritesFlushAtOnce(t *testing.T) {
	var out lockedBuffer
	b := NewBuffer(&out, 1<<30) // never by time
	defer b.Close()
	b.Write(bytes.Repeat([]byte("x"), flushAt))
	if got := len(out.String()); got != flushAt {
		t.Errorf("after %d bytes the writer has %d", flushAt, got)
	}
}
