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

// TestChunkedScannerBoundsTheTrailerSection sends trailer lines, each
// short, after 64 KiB of data, in 100-byte pieces: up to 16 KiB of them
// end the body; past that the scanner refuses rather than read on.
func TestChunkedScannerBoundsTheTrailerSection(t *testing.T) {
	data := "10000\r\n" + strings.Repeat("d", 1<<16) + "\r\n0\r\n"
	line := "X-T: " + strings.Repeat("v", 95) + "\r\n" // 102 bytes
	for _, tc := range []struct {
		lines int
		ok    bool
	}{{160, true}, {161, false}, {5000, false}} {
		wire := data + strings.Repeat(line, tc.lines) + "\r\n"
		var s ChunkedScanner
		var err error
		done := false
		for at := 0; at < len(wire) && !done && err == nil; at += 100 {
			_, done, err = s.Scan([]byte(wire[at:min(at+100, len(wire))]), nil)
		}
		if tc.ok && (err != nil || !done) {
			t.Errorf("%d trailer lines (%d bytes): done %v, %v", tc.lines, tc.lines*len(line), done, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "trailer section over 16 KiB")) {
			t.Errorf("%d trailer lines (%d bytes): done %v, %v; want the trailer refused", tc.lines, tc.lines*len(line), done, err)
		}
	}
}
