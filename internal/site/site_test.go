package site

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"loadlab/internal/httpx"
)

// ask runs one raw request through s and returns the response and its body.
func ask(t *testing.T, s *Site, raw string) (*httpx.Response, string) {
	t.Helper()
	req, _, err := httpx.NewParser(httpx.DefaultLimits()).Parse([]byte(raw))
	if err != nil || req == nil {
		t.Fatalf("request %q does not parse: %v", raw, err)
	}
	resp := &httpx.Response{}
	s.Serve(req, resp)
	body := string(resp.Body)
	if resp.Stream != nil {
		b, _ := io.ReadAll(resp.Stream)
		resp.Stream.Close()
		body = string(b)
	}
	return resp, body
}

type want struct {
	status      int
	contentType string
	body        string // prefix of the body
	header      string // "Location: x" or "Allow: x"
}

func check(t *testing.T, s *Site, raw string, w want) {
	t.Helper()
	resp, body := ask(t, s, raw)
	if resp.Status != w.status {
		t.Errorf("%q: status %d, want %d", raw, resp.Status, w.status)
	}
	if w.contentType != "" && resp.ContentType != w.contentType {
		t.Errorf("%q: Content-Type %q, want %q", raw, resp.ContentType, w.contentType)
	}
	if !strings.HasPrefix(body, w.body) {
		t.Errorf("%q: body %.60q, want it to start with %q", raw, body, w.body)
	}
	switch name, value, _ := strings.Cut(w.header, ": "); name {
	case "Location":
		if resp.Location != value {
			t.Errorf("%q: Location %q, want %q", raw, resp.Location, value)
		}
	case "Allow":
		if resp.Allow != value {
			t.Errorf("%q: Allow %q, want %q", raw, resp.Allow, value)
		}
	}
}

// labRoutes hold for every document root.
var labRoutes = []struct {
	raw string
	w   want
}{
	{"GET / HTTP/1.0\r\n\r\n", want{200, "text/plain; charset=utf-8", "Ini Adalah web Server percobaan", ""}},
	{"GET /?a=1 HTTP/1.0\r\n\r\n", want{200, "", "Ini Adalah web Server percobaan", ""}},
	{"GET /santai HTTP/1.0\r\n\r\n", want{200, "", "santai saja", ""}},
	{"GET /video HTTP/1.0\r\n\r\n", want{302, "", "", "Location: https://youtu.be/katoxpnTf04"}},
	{"POST / HTTP/1.0\r\n\r\n", want{405, "", "", "Allow: GET, HEAD, OPTIONS"}},
	{"GET /form HTTP/1.0\r\n\r\n", want{405, "", "", "Allow: POST, OPTIONS"}},
	{"POST /form HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 28\r\n\r\nnama=Budi+S&pesan=halo%21&x=", want{200, "text/plain; charset=utf-8", "nama: Budi S\npesan: halo!\nx: \n", ""}},
	{"POST /form HTTP/1.0\r\nContent-Type: multipart/form-data; boundary=XX\r\nContent-Length: 61\r\n\r\n--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--XX--\r\n", want{200, "", "a: b\n", ""}},
	{"POST /form HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", want{415, "", "", ""}},
	{"GET /missing.html HTTP/1.0\r\n\r\n", want{404, "", "404 Not Found", ""}},
	{"GET /page.html/ HTTP/1.0\r\n\r\n", want{404, "", "", ""}},
	{"GET /page.html HTTP/1.0\r\n\r\n", want{200, "text/html; charset=utf-8", "<!DOCTYPE html>", ""}},
	{"GET /page.html?x=%2f HTTP/1.0\r\n\r\n", want{200, "text/html; charset=utf-8", "<!DOCTYPE html>", ""}},
	{"GET /testing.txt HTTP/1.0\r\n\r\n", want{200, "text/plain; charset=utf-8", "Ini adalah file testing.txt", ""}},
	{"GET /images/gedung.jpg HTTP/1.0\r\n\r\n", want{200, "image/jpeg", "\xff\xd8", ""}},
	{"GET /payload-1k.bin HTTP/1.0\r\n\r\n", want{200, "application/octet-stream", "loadlab payload line 000000", ""}},
	{"POST /page.html HTTP/1.0\r\nContent-Length: 0\r\n\r\n", want{405, "", "", "Allow: GET, HEAD, OPTIONS"}},
	{"DELETE /testing.txt HTTP/1.0\r\n\r\n", want{405, "", "", "Allow: GET, HEAD, OPTIONS"}},
	{"GET /images/ HTTP/1.0\r\n\r\n", want{404, "", "", ""}},
	{"GET /images HTTP/1.0\r\n\r\n", want{404, "", "", ""}},
	{"BREW /pot HTTP/1.0\r\n\r\n", want{501, "", "501 Not Implemented", ""}},
	{"BREW / HTTP/1.0\r\n\r\n", want{501, "", "", ""}},
	{"OPTIONS * HTTP/1.0\r\n\r\n", want{200, "", "", "Allow: GET, HEAD, POST, OPTIONS"}},
	{"OPTIONS /page.html HTTP/1.0\r\n\r\n", want{200, "", "", "Allow: GET, HEAD, OPTIONS"}},
	{"OPTIONS /form HTTP/1.0\r\n\r\n", want{200, "", "", "Allow: POST, OPTIONS"}},
	{"OPTIONS /santai HTTP/1.0\r\n\r\n", want{200, "", "", "Allow: GET, HEAD, OPTIONS"}},
	{"GET /testing.txt HTTP/1.0\r\nRange: bytes=0-9\r\n\r\n", want{206, "text/plain; charset=utf-8", "Ini adalah", ""}},
	{"GET /testing.txt HTTP/1.0\r\nRange: bytes=0-2,4-5\r\n\r\n", want{206, "", "\r\n--loadlab", ""}},
	{"GET /testing.txt HTTP/1.0\r\nRange: bytes=99999-\r\n\r\n", want{416, "", "", ""}},
	{"GET /testing.txt HTTP/1.0\r\nIf-None-Match: *\r\n\r\n", want{304, "", "", ""}},
	{"GET /testing.txt HTTP/1.0\r\nIf-Match: \"x\"\r\n\r\n", want{412, "", "", ""}},
}

func TestEmbeddedSite(t *testing.T) {
	s, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range labRoutes {
		check(t, s, r.raw, r.w)
	}
}

// diskRoot copies the embedded site to a directory and adds what only a
// disk has: a directory with an index, and links that lead out.
func diskRoot(t *testing.T) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "root")
	if err := os.CopyFS(root, mustSub(defaultSite, "www")); err != nil {
		t.Fatal(err)
	}
	outside = filepath.Join(base, "secret.txt")
	write(t, outside, "TOP SECRET outside the root\n")
	write(t, filepath.Join(root, "docs", "index.html"), "<p>docs index</p>\n")
	os.Symlink(outside, filepath.Join(root, "escape.txt"))
	os.Symlink(base, filepath.Join(root, "up"))
	os.Symlink("testing.txt", filepath.Join(root, "inside.txt"))
	return root, outside
}

func TestDiskSite(t *testing.T) {
	root, _ := diskRoot(t)
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range labRoutes {
		check(t, s, r.raw, r.w)
	}
	for _, r := range []struct {
		raw string
		w   want
	}{
		{"GET /docs/ HTTP/1.0\r\n\r\n", want{200, "text/html; charset=utf-8", "<p>docs index</p>", ""}},
		{"GET /docs?q=1 HTTP/1.0\r\n\r\n", want{301, "", "", "Location: /docs/?q=1"}},
		{"GET /escape.txt HTTP/1.0\r\n\r\n", want{404, "", "", ""}},
		{"GET /up/secret.txt HTTP/1.0\r\n\r\n", want{404, "", "", ""}},
		{"GET /inside.txt HTTP/1.0\r\n\r\n", want{200, "", "Ini adalah file testing.txt", ""}},
		{"GET /payload-1m.bin HTTP/1.0\r\n\r\n", want{200, "", "loadlab payload line 000000", ""}},
	} {
		check(t, s, r.raw, r.w)
	}
	if resp, _ := ask(t, s, "GET /payload-1m.bin HTTP/1.0\r\n\r\n"); resp.Stream == nil || resp.ContentLength != 1<<20 {
		t.Errorf("a 1 MiB file on disk should be streamed, got %v length %d", resp.Stream, resp.ContentLength)
	}
}

// A named pipe in the root is not served (404, as nginx answers), and
// asking for it does not wait for a writer: on an event loop that wait
// held every client.
func TestDiskSiteRefusesWhatIsNotAFile(t *testing.T) {
	root, _ := diskRoot(t)
	if err := syscall.Mkfifo(filepath.Join(root, "pipe"), 0o644); err != nil {
		t.Skip(err)
	}
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(t, s, "GET /pipe HTTP/1.0\r\n\r\n", want{404, "", "", ""})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("GET /pipe waited for a writer to the pipe")
	}
	check(t, s, "GET /testing.txt HTTP/1.0\r\n\r\n", want{200, "", "Ini adalah file testing.txt", ""})
}

func TestIfModifiedSince(t *testing.T) {
	s, _ := New("")
	resp, _ := ask(t, s, "GET /testing.txt HTTP/1.0\r\n\r\n")
	lm := resp.LastModified
	if lm == "" {
		t.Fatal("no Last-Modified")
	}
	check(t, s, "GET /testing.txt HTTP/1.0\r\nIf-Modified-Since: "+lm+"\r\n\r\n", want{status: 304})
	check(t, s, "GET /testing.txt HTTP/1.0\r\nIf-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT\r\n\r\n", want{status: 200})
	check(t, s, "GET /testing.txt HTTP/1.0\r\nIf-Modified-Since: yesterday\r\n\r\n", want{status: 200})
}

func TestMissingRoot(t *testing.T) {
	_, err := New(filepath.Join(t.TempDir(), "nope"))
	if err == nil || !strings.Contains(err.Error(), "--root") {
		t.Fatalf("want an error naming --root, got %v", err)
	}
}

func write(t *testing.T, name, content string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(name), 0o755)
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestContentTypesAreNginxs(t *testing.T) {
	for name, want := range map[string]string{
		"a.swf": "application/x-shockwave-flash", "a.woff2": "font/woff2", "a.mp3": "audio/mpeg",
		"a.docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
		"A.HTML": "text/html; charset=utf-8", "a.7z": "application/x-7z-compressed", "a.unknown": "application/octet-stream",
	} {
		if got := contentType(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}
