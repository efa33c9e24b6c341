package httpx

import (
	"strings"
	"testing"
)

// TestChunkedScannerFindsTheEndInAnyPieces feeds a chunked body, with an
// extension, a trailer and a next response behind it, split at every
// position: the scanner must stop exactly at the body's end and yield
// the same data each time.
func TestChunkedScannerFindsTheEndInAnyPieces(t *testing.T) {
	body := "3\r\nabc\r\nA;name=v\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n"
	wire := body + "HTTP/1.1 200 OK\r\n"
	for cut := range len(wire) {
		var s ChunkedScanner
		var data []byte
		used, done := 0, false
		for _, piece := range []string{wire[:cut], wire[cut:]} {
			if done {
				break
			}
			n, d, err := s.Scan([]byte(piece), &data)
			if err != nil {
				t.Fatalf("cut %d: %v", cut, err)
			}
			used, done = used+n, d
		}
		if !done || used != len(body) || string(data) != "abc0123456789" {
			t.Fatalf("cut %d: done %v after %d bytes (want %d), data %q", cut, done, used, len(body), data)
		}
	}
}

func TestChunkedScannerRefusesBadFraming(t *testing.T) {
	for _, bad := range []string{
		"3\r\nabcX\r\n",           // data longer than its size
		"3\nabc\r\n",              // bare LF
		"zz\r\n",                  // not hex
		"3;\x00\r\nabc\r\n",       // control byte in an extension
		strings.Repeat("1", 5000), // a size line without end
	} {
		var s ChunkedScanner
		if _, _, err := s.Scan([]byte(bad), nil); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
