package site

import (
	"testing"

	"loadlab/internal/httpx"
)

// benchServe measures the handler alone: one parsed request, answered
// into a reused Response, as a server connection does.
func benchServe(b *testing.B, raw string) {
	s, err := New("")
	if err != nil {
		b.Fatal(err)
	}
	req, _, err := httpx.NewParser(httpx.DefaultLimits()).Parse([]byte(raw))
	if err != nil || req == nil {
		b.Fatal(err)
	}
	var resp httpx.Response
	b.ReportAllocs()
	for b.Loop() {
		resp.Reset()
		s.Serve(req, &resp)
	}
	if resp.Status != 200 {
		b.Fatalf("status %d", resp.Status)
	}
}

func BenchmarkServeRoot(b *testing.B) { benchServe(b, "GET / HTTP/1.0\r\n\r\n") }
func BenchmarkServeFile(b *testing.B) { benchServe(b, "GET /images/gedung.jpg HTTP/1.0\r\n\r\n") }
func BenchmarkServeForm(b *testing.B) {
	benchServe(b, "POST /form HTTP/1.0\r\nContent-Length: 23\r\n\r\nnama=Ani&nrp=0517&x=%21")
}

func TestServeRootAllocatesNothing(t *testing.T) {
	s, _ := New("")
	req, _, _ := httpx.NewParser(httpx.DefaultLimits()).Parse([]byte("GET / HTTP/1.0\r\n\r\n"))
	var resp httpx.Response
	if n := testing.AllocsPerRun(1000, func() { resp.Reset(); s.Serve(req, &resp) }); n != 0 {
		t.Errorf("GET / allocates %.1f times, want 0", n)
	}
}
