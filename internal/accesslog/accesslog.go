// Package accesslog builds the slog loggers that write loadlab's access
// logs, one line per request or connection, through a buffer that a
// background flush empties, so a slow terminal never slows a server.
package accesslog

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
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
	l, err := NewLogger(b, format)
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	return l, b, nil
}

// NewLogger returns a logger writing in format to b.
func NewLogger(b *Buffer, format string) (*slog.Logger, error) {
	switch format {
	case FormatText, "":
		return slog.New(slog.NewTextHandler(b, nil)), nil
	case FormatJSON:
		return slog.New(slog.NewJSONHandler(b, nil)), nil
	}
	return nil, fmt.Errorf("unknown log format %q (use text or json)", format)
}

// Buffer collects writes in memory and passes them on an interval after
// the first of them, or soon after it holds 64 KiB, from a goroutine of
// its own: a writer that blocks (a pipe nobody reads) or fails (a pipe
// whose reader left) holds up only that goroutine, never a Write. When
// more than maxBuffered waits, further lines are dropped and counted.
// Safe for concurrent use.
type Buffer struct {
	mu      sync.Mutex
	flushMu sync.Mutex // one write under way at a time
	buf     []byte
	spare   []byte
	dropped atomic.Int64
	w       io.Writer
	filled  chan struct{} // the buffer was empty and is not: start the interval
	full    chan struct{} // it holds flushAt: flush now
	stop    chan struct{}
	done    chan struct{}
}

const (
	flushAt     = 64 << 10
	maxBuffered = 1 << 20
)

// closeWait bounds how long Close waits for a writer that does not take
// the last lines.
const closeWait = time.Second

// NewBuffer starts a Buffer that flushes to w within interval of a write.
// With nothing written, its goroutine sleeps: a ticker would wake every
// idle server ten times a second, and each wake costs the Go runtime a
// dozen context switches on a machine the server shares with the load
// (docs/PERFORMANCE.md).
func NewBuffer(w io.Writer, interval time.Duration) *Buffer {
	b := &Buffer{w: w, filled: make(chan struct{}, 1), full: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTimer(interval)
		t.Stop()
		for {
			select {
			case <-b.filled: // gather for an interval, unless it fills
				t.Reset(interval)
				select {
				case <-t.C:
				case <-b.full:
					t.Stop()
				case <-b.stop:
					b.Flush()
					return
				}
			case <-b.full:
			case <-b.stop:
				b.Flush()
				return
			}
			b.Flush()
		}
	}()
	return b
}

// Write keeps p for the next flush, or drops it when too much waits.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	if len(b.buf)+len(p) > maxBuffered {
		b.mu.Unlock()
		b.dropped.Add(1)
		return len(p), nil
	}
	first := len(b.buf) == 0
	b.buf = append(b.buf, p...)
	full := len(b.buf) >= flushAt
	b.mu.Unlock()
	switch {
	case full:
		signal(b.full)
	case first:
		signal(b.filled)
	}
	return len(p), nil
}

// signal tells the flushing goroutine without waiting: one signal pending
// is as good as many.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Dropped is how many writes were dropped because the writer fell behind.
func (b *Buffer) Dropped() int64 { return b.dropped.Load() }

// Flush writes out what is buffered.
func (b *Buffer) Flush() {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.mu.Lock()
	out := b.buf
	b.buf = b.spare[:0]
	b.mu.Unlock()
	if len(out) > 0 {
		b.w.Write(out) // a log that cannot be written must not stop the server
	}
	b.mu.Lock()
	b.spare = out[:0]
	b.mu.Unlock()
}

// Close flushes and stops the background flush; it gives a writer that
// does not take the last lines closeWait, then leaves them.
func (b *Buffer) Close() error {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	select {
	case <-b.done:
	case <-time.After(closeWait):
	}
	return nil
}
