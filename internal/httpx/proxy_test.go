package httpx

import (
	"strings"
	"testing"
)

func TestAppendProxyRequest(t *testing.T) {
	for _, tc := range []struct {
		name, in, client, proto, want string
	}{
		{"HTTP/1.0 keep-alive, forwarding headers added",
			"GET /a?b HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", "10.0.0.1", "http",
			"GET /a?b HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: http\r\n" +
				"Forwarded: for=10.0.0.1;proto=http\r\nVia: 1.0 lb\r\nConnection: keep-alive\r\n\r\n"},
		{"lists extended, every line of them",
			"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nVia: 1.1 a\r\nForwarded: for=1.1.1.1\r\n\r\n", "::1", "http",
			"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, ::1\r\nX-Forwarded-Proto: http\r\n" +
				"Forwarded: for=1.1.1.1, for=\"[::1]\";proto=http\r\nVia: 1.1 a, 1.1 lb\r\nConnection: keep-alive\r\n\r\n"},
		{"hop-by-hop and Connection-listed fields dropped, Expect answered here",
			"POST / HTTP/1.1\r\nHost: h\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nTE: trailers\r\nKeep-Alive: 5\r\n" +
				"Expect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", "10.0.0.1", "http",
			"POST / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: http\r\n" +
				"Forwarded: for=10.0.0.1;proto=http\r\nVia: 1.1 lb\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nhi"},
		{"a chunked body sent on by length",
			"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "10.0.0.1", "http",
			"POST / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: http\r\n" +
				"Forwarded: for=10.0.0.1;proto=http\r\nVia: 1.1 lb\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc"},
		{"an upgrade passed on with its Upgrade, the connection upgraded",
			"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: k\r\n\r\n", "10.0.0.1", "http",
			"GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: http\r\n" +
				"Forwarded: for=10.0.0.1;proto=http\r\nVia: 1.1 lb\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"},
		{"h2c not asked for: its HTTP2-Settings, listed in Connection, is dropped",
			"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: x\r\n\r\n", "10.0.0.1", "http",
			"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: http\r\n" +
				"Forwarded: for=10.0.0.1;proto=http\r\nVia: 1.1 lb\r\nConnection: keep-alive\r\n\r\n"},
		{"TLS ended by the proxy: proto https, the client's own claim replaced",
			"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: http\r\n\r\n", "10.0.0.1", "https",
			"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n" +
				"Forwarded: for=10.0.0.1;proto=https\r\nVia: 1.1 lb\r\nConnection: keep-alive\r\n\r\n"},
	} {
		req, _, err := NewParser(DefaultLimits()).Parse([]byte(tc.in))
		if err != nil || req == nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := string(AppendProxyRequest(nil, req, tc.client, tc.proto, "lb")); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestAppendProxyResponseHead(t *testing.T) {
	const chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
	for _, tc := range []struct {
		name, head   string
		isHead, keep bool
		decode       bool
		want         string
	}{
		{"by length, kept alive", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n", false, true, false,
			"HTTP/1.1 200 OK\r\nVia: 1.1 lb\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n"},
		{"HTTP/1.0 server, bare LF, Via extended, Connection-listed field dropped", "HTTP/1.0 404 Not Found\nVia: 1.0 x\nConnection: X-B\nX-B: 1\nContent-Length: 0\n\n", false, false, false,
			"HTTP/1.1 404 Not Found\r\nVia: 1.0 x, 1.0 lb\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"chunked passed on", chunked, false, true, false,
			"HTTP/1.1 200 OK\r\nX-A: 1\r\nVia: 1.1 lb\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"},
		{"chunked decoded for an HTTP/1.0 client, ended by the close", chunked, false, false, true,
			"HTTP/1.1 200 OK\r\nX-A: 1\r\nVia: 1.1 lb\r\nConnection: close\r\n\r\n"},
		{"HEAD keeps the length it would have had", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", true, true, false,
			"HTTP/1.1 200 OK\r\nVia: 1.1 lb\r\nContent-Length: 99\r\nConnection: keep-alive\r\n\r\n"},
	} {
		rh, err := ParseResponseHead([]byte(tc.head))
		if err != nil {
			t.Fatal(err)
		}
		got := string(AppendProxyResponseHead(nil, &rh, ResponseFraming(&rh, tc.isHead), tc.decode, tc.isHead, tc.keep, "lb"))
		if got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// An interim (1xx) head and a 101 go on with the end-to-end headers and
// Via; a 101 also with its Upgrade and "Connection: upgrade".
func TestAppendProxyInterimAndUpgradeHeads(t *testing.T) {
	for _, tc := range []struct {
		name, head, want string
		write            func(b []byte, rh *ResponseHead, self string) []byte
	}{
		{"103", "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nConnection: keep-alive, X-B\r\nX-B: 1\r\n\r\n",
			"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nVia: 1.1 lb\r\n\r\n", AppendProxyInterimHead},
		{"101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade, X-B\r\nX-B: 1\r\nSec-WebSocket-Accept: a\r\n\r\n",
			"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: a\r\nVia: 1.1 lb\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", AppendProxyUpgradeHead},
	} {
		rh, err := ParseResponseHead([]byte(tc.head))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(tc.write(nil, &rh, "lb")); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestHostsAgree(t *testing.T) {
	for _, tc := range []struct {
		in    string
		agree bool
	}{
		{"GET /p HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"GET http://x/p HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"GET HTTP://X:80/p HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"GET https://x/p HTTP/1.1\r\nHost: X:443\r\n\r\n", true},
		{"GET http://x?q HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"GET http://x:8080/ HTTP/1.1\r\nHost: x:8080\r\n\r\n", true},
		{"GET http://other/p HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"GET http://x:8080/p HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"GET https://x:80/p HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"GET http://other/p HTTP/1.0\r\nHost: x\r\n\r\n", false},
		{"GET http://other/p HTTP/1.0\r\n\r\n", false}, // no Host to agree with: the proxy would write its backend's
		{"GET http://u@x/p HTTP/1.1\r\nHost: x\r\n\r\n", false},
	} {
		req, _, err := NewParser(DefaultLimits()).Parse([]byte(tc.in))
		if err != nil || req == nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if got := HostsAgree(req); got != tc.agree {
			t.Errorf("%q: agree %v, want %v", tc.in, got, tc.agree)
		}
	}
}

func TestInsertHost(t *testing.T) {
	req, _, _ := NewParser(DefaultLimits()).Parse([]byte("HEAD /page.html HTTP/1.0\r\n\r\n"))
	out := string(InsertHost(nil, AppendProxyRequest(nil, req, "10.0.0.1", "http", "lb"), "127.0.0.1:9002"))
	if !strings.HasPrefix(out, "HEAD /page.html HTTP/1.1\r\nHost: 127.0.0.1:9002\r\nX-Forwarded-For: 10.0.0.1\r\n") {
		t.Errorf("got %q", out)
	}
	if got, _, err := NewParser(DefaultLimits()).Parse([]byte(out)); err != nil || got == nil || string(got.Host) != "127.0.0.1:9002" {
		t.Errorf("the backend's parser: %v %v", got, err)
	}
}

func TestPassedThrough(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"GET / HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: h\r\nVia: 1.1 other\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: h\r\nVia: 1.1 other\r\nvia: 1.1 lb-7f3a\r\n\r\n", true},
	} {
		req, _, err := NewParser(DefaultLimits()).Parse([]byte(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		if got := PassedThrough(req, "lb-7f3a"); got != tc.want {
			t.Errorf("%q: %v, want %v", strings.TrimSpace(tc.in), got, tc.want)
		}
	}
}
