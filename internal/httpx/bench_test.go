package httpx

import "testing"

// abRequest is what ab sends for "ab -n N http://127.0.0.1:8080/".
var abRequest = []byte("GET / HTTP/1.0\r\nHost: 127.0.0.1:8080\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n")

func BenchmarkParseAB(b *testing.B) {
	p := NewParser(DefaultLimits())
	b.ReportAllocs()
	b.SetBytes(int64(len(abRequest)))
	for b.Loop() {
		if req, _, err := p.Parse(abRequest); req == nil || err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseBrowser(b *testing.B) {
	in := []byte("GET /images/gedung.jpg?v=3 HTTP/1.1\r\nHost: localhost:44444\r\nConnection: keep-alive\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36\r\n" +
		"Accept: image/avif,image/webp,image/apng,image/*,*/*;q=0.8\r\nReferer: http://localhost:44444/page.html\r\n" +
		"Accept-Encoding: gzip, deflate, br\r\nAccept-Language: id-ID,id;q=0.9,en;q=0.8\r\n\r\n")
	p := NewParser(DefaultLimits())
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if req, _, err := p.Parse(in); req == nil || err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendHead(b *testing.B) {
	var r Response
	r.SetText(200, "Ini Adalah web Server percobaan")
	o := &HeadOptions{Server: "loadlab/0.1.0"}
	out := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		out = AppendHead(out[:0], &r, true, o)
	}
}
