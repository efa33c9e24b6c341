package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"loadlab/internal/httpx"
	"loadlab/internal/testutil"
)

// probe is one raw request and what nginx would answer it.
type probe struct {
	name    string
	raw     string
	status  int
	headers []string // "Name: value" that must be there (a value ending in * is a prefix)
	absent  []string // header names that must not be there
	body    func([]byte) bool
}

// TestHTTPSemanticsAsNginx sends the same probes to serve on every model
// and to both balancer modes in front of it: validators and conditional
// requests, ranges, HEAD, Host, transfer codings, methods and OPTIONS.
// Each answer must be nginx's, and the balancers must pass them on as
// serve gives them.
func TestHTTPSemanticsAsNginx(t *testing.T) {
	testutil.NoteSources()
	root := t.TempDir()
	text := []byte("Ini adalah file testing.txt untuk percobaan range\n")
	big := make([]byte, 200<<10) // streamed from disk, past serve's 64 KiB in memory
	for i := range big {
		big[i] = byte(i % 251)
	}
	for name, b := range map[string][]byte{"testing.txt": text, "big.bin": big} {
		if err := os.WriteFile(filepath.Join(root, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	info, _ := os.Stat(filepath.Join(root, "testing.txt"))
	etag := httpx.ETag(info.ModTime(), info.Size())
	lastMod := info.ModTime().UTC().Format(httpx.TimeFormat)
	n := len(text)
	is := func(want []byte) func([]byte) bool { return func(b []byte) bool { return bytes.Equal(b, want) } }
	empty := is(nil)
	get := func(path, headers string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + headers + "\r\n"
	}
	probes := []probe{
		{"validators", get("/testing.txt", ""), 200,
			[]string{"ETag: " + etag, "Last-Modified: " + lastMod, "Accept-Ranges: bytes"}, nil, is(text)},
		{"If-None-Match matches", get("/testing.txt", "If-None-Match: "+etag+"\r\n"), 304,
			[]string{"ETag: " + etag, "Last-Modified: " + lastMod}, nil, empty},
		{"If-None-Match weak", get("/testing.txt", "If-None-Match: \"x\", W/"+etag+"\r\n"), 304, nil, nil, empty},
		{"If-None-Match *", get("/testing.txt", "If-None-Match: *\r\n"), 304, nil, nil, empty},
		{"If-None-Match wins over If-Modified-Since", get("/testing.txt", "If-None-Match: \"nomatch\"\r\nIf-Modified-Since: "+lastMod+"\r\n"), 200, nil, nil, is(text)},
		{"If-Modified-Since", get("/testing.txt", "If-Modified-Since: "+lastMod+"\r\n"), 304, nil, nil, empty},
		{"If-Match fails", get("/testing.txt", "If-Match: \"other\"\r\n"), 412, nil, nil, nil},
		{"range a-b", get("/testing.txt", "Range: bytes=0-9\r\n"), 206,
			[]string{fmt.Sprintf("Content-Range: bytes 0-9/%d", n), "Content-Length: 10"}, nil, is(text[:10])},
		{"range a-", get("/testing.txt", "Range: bytes=40-\r\n"), 206,
			[]string{fmt.Sprintf("Content-Range: bytes 40-%d/%d", n-1, n)}, nil, is(text[40:])},
		{"range -suffix", get("/testing.txt", "Range: bytes=-6\r\n"), 206, nil, nil, is(text[n-6:])},
		{"range unsatisfiable", get("/testing.txt", fmt.Sprintf("Range: bytes=%d-\r\n", n)), 416,
			[]string{fmt.Sprintf("Content-Range: bytes */%d", n)}, nil, nil},
		{"range last before first", get("/testing.txt", "Range: bytes=5-2\r\n"), 416,
			[]string{fmt.Sprintf("Content-Range: bytes */%d", n)}, nil, nil},
		{"range that cannot be read", get("/testing.txt", "Range: bytes=abc\r\n"), 416, nil, nil, nil},
		{"a bad range beside a good one", get("/testing.txt", "Range: bytes=5-2,0-1\r\n"), 206,
			[]string{fmt.Sprintf("Content-Range: bytes 0-1/%d", n)}, nil, is(text[:2])},
		{"If-Range matches", get("/testing.txt", "Range: bytes=0-2\r\nIf-Range: "+etag+"\r\n"), 206, nil, nil, is(text[:3])},
		{"If-Range stale", get("/testing.txt", "Range: bytes=0-2\r\nIf-Range: \"old\"\r\n"), 200, nil, []string{"Content-Range"}, is(text)},
		{"HEAD with a range", "HEAD /testing.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\nRange: bytes=0-9\r\n\r\n", 206,
			[]string{"Content-Length: 10", fmt.Sprintf("Content-Range: bytes 0-9/%d", n)}, nil, empty},
		{"two ranges", get("/testing.txt", "Range: bytes=0-2,4-5\r\n"), 206,
			[]string{"Content-Type: multipart/byteranges; boundary=*"}, []string{"Content-Range"},
			func(b []byte) bool {
				return bytes.Contains(b, []byte(fmt.Sprintf("Content-Range: bytes 0-2/%d\r\n\r\nIni\r\n", n))) &&
					bytes.Contains(b, []byte(fmt.Sprintf("Content-Range: bytes 4-5/%d\r\n\r\nad\r\n", n)))
			}},
		{"range of a streamed file", get("/big.bin", "Range: bytes=1000-101000\r\n"), 206,
			[]string{"Content-Range: bytes 1000-101000/204800"}, nil, is(big[1000:101001])},
		{"HTTP/1.0 HEAD without Host", "HEAD /testing.txt HTTP/1.0\r\n\r\n", 200, []string{fmt.Sprintf("Content-Length: %d", n)}, nil, empty},
		{"slashes merged and dots resolved", get("//sub/./x/../../testing.txt", ""), 200, nil, nil, is(text)},
		{"an encoded slash is a slash", get("/sub%2f..%2Ftesting.txt", ""), 200, nil, nil, is(text)},
		{"dot-dot above the root", get("/sub/../../testing.txt", ""), 400, nil, nil, nil},
		{"HTTP/0.9, answered when its line ends", "GET /testing.txt\r\n", 400, nil, nil, nil},
		{"Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, nil, nil, nil},
		{"Host with a slash", "GET / HTTP/1.1\r\nHost: x/y\r\n\r\n", 400, nil, nil, nil},
		{"chunked not the last coding", "POST /form HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, nil, nil, nil},
		{"unknown method", "BREW /pot HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 501, nil, nil, nil},
		{"known method refused", "DELETE /testing.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 405,
			[]string{"Allow: GET, HEAD, OPTIONS"}, nil, nil},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 200, []string{"Allow: GET, HEAD, POST, OPTIONS"}, nil, empty},
		{"OPTIONS a path", "OPTIONS /form HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 200, []string{"Allow: POST, OPTIONS"}, nil, empty},
	}

	targets := map[string]string{}
	for _, model := range []string{"async", "thread", "pool", "prefork"} {
		_, addr, _ := serve(t, "--model", model, "--root", root, "--quiet")
		targets[model] = addr
	}
	for _, mode := range []string{"tcp", "http"} {
		_, addr, _ := balance(t, "--mode", mode, "--quiet", "--backend", targets["async"])
		targets["balance --mode "+mode] = addr
	}
	for name, addr := range targets {
		for _, p := range probes {
			p.check(t, name, addr)
		}
	}
}

// check sends the probe on a new connection and compares the answer.
func (p probe) check(t *testing.T, target, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, p.raw)
	method, _, _ := strings.Cut(p.raw, " ")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Errorf("%s, %s: %v", target, p.name, err)
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Errorf("%s, %s: body: %v", target, p.name, err)
		return
	}
	if resp.StatusCode != p.status {
		t.Errorf("%s, %s: status %d, want %d", target, p.name, resp.StatusCode, p.status)
		return
	}
	for _, h := range p.headers {
		name, want, _ := strings.Cut(h, ": ")
		got := resp.Header.Get(name)
		if name == "Content-Length" {
			got = fmt.Sprint(resp.ContentLength)
		}
		if prefix, ok := strings.CutSuffix(want, "*"); ok && strings.HasPrefix(got, prefix) || got == want {
			continue
		}
		t.Errorf("%s, %s: %s %q, want %q", target, p.name, name, got, want)
	}
	for _, name := range p.absent {
		if v := resp.Header.Get(name); v != "" {
			t.Errorf("%s, %s: %s %q, want none", target, p.name, name, v)
		}
	}
	if p.body != nil && !p.body(body) {
		t.Errorf("%s, %s: body %.80q", target, p.name, body)
	}
}
