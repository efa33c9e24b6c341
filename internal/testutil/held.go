package testutil

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// Held is a connection whose request a server may be holding (a body not
// yet whole), and the reader of its answer.
type Held struct {
	Conn     net.Conn
	R        *bufio.Reader
	answered bool
}

// RefusedSoFar reads the answer of each held connection that has begun
// one, and counts those refused so far: a 503, or the connection cut
// (the close after a 503 may reset it before it is read). Any other
// answer to a request still coming fails t. A connection with nothing to
// read yet is passed over, to be looked at again by the next call.
func RefusedSoFar(t *testing.T, held []*Held) (refused int) {
	t.Helper()
	for _, h := range held {
		if !h.answered {
			h.Conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, err := h.R.Peek(1); errors.Is(err, os.ErrDeadlineExceeded) {
				continue // still held, waiting for the rest of its body
			}
			h.answered = true
			h.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if resp, err := http.ReadResponse(h.R, nil); err == nil && resp.StatusCode != 503 {
				t.Errorf("a request still coming was answered %d", resp.StatusCode)
				continue
			}
			h.Conn.SetReadDeadline(time.Time{})
		}
		refused++
	}
	return refused
}
