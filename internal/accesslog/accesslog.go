// Package accesslog builds the slog loggers that write loadlab's access
// logs, one line per request or connection, through a buffer that a
// background flush empties, so a slow terminal never slows a server.
package accesslog

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Formats are the values --log-format accepts.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// New returns a logger writing in format to w through a Buffer, and the
// Buffer, whose Close flushes what is left.
func New(w io.Writer, format string) (*slog.Logger, *Buffer, error) {
	b := NewBuffer(w, 100*time.Millisecond)
	var h slog.Handler
	switch format {
	case FormatText, "":
		h = slog.NewTextHandler(b, nil)
	case FormatJSON:
		h = slog.NewJSONHandler(b, nil)
	default:
		b.Close()
		return nil, nil, fmt.Errorf("unknown log format %q (use text or json)", format)
	}
	return slog.New(h), b, nil
}

// Buffer collects writes in memory and passes them on every interval, or
// at once when it holds 64 KiB. Safe for concurrent use.
type Buffer struct {
	mu   sync.Mutex
	buf  []byte
	w    io.Writer
	stop chan struct{}
	done chan struct{}
}

const flushAt = 64 << 10

// NewBuffer starts a Buffer that flushes to w every interval.
func NewBuffer(w io.Writer, interval time.Duration) *Buffer {
	b := &Buffer{w: w, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				b.Flush()
			case <-b.stop:
				b.Flush()
				return
			}
		}
	}()
	return b
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) >= flushAt {
		b.flushLocked()
	}
	return len(p), nil
}

// Flush writes out what is buffered.
func (b *Buffer) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *Buffer) flushLocked() {
	if len(b.buf) > 0 {
		b.w.Write(b.buf) // a log that cannot be written must not stop the server
		b.buf = b.buf[:0]
	}
}

// Close flushes and stops the background flush.
func (b *Buffer) Close() error {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
	return nil
}
