package httpx

import "testing"

func TestParseResponseHead(t *testing.T) {
	cases := []struct {
		head                       string
		status, minor              int
		length                     int64
		chunked, keepAlive, failed bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 31\r\nServer: s\r\n\r\n", 200, 1, 31, false, true, false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n", 200, 1, -1, true, false, false},
		{"HTTP/1.0 302 Found\r\nLocation: /x\r\nConnection: Keep-Alive\r\n\r\n", 302, 0, -1, false, true, false},
		{"HTTP/1.0 200 OK\n\n", 200, 0, -1, false, false, false},
		{"HTTP/1.1 204 No Content\r\n\r\n", 204, 1, -1, false, true, false},
		{"HTTP/2 200\r\n\r\n", 0, 0, 0, false, false, true},
		{"HTTP/1.1 2x0 OK\r\n\r\n", 0, 0, 0, false, false, true},
		{"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", 0, 0, 0, false, false, true},
		{"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", 0, 0, 0, false, false, true},
	}
	for _, c := range cases {
		h, err := ParseResponseHead([]byte(c.head))
		if (err != nil) != c.failed {
			t.Errorf("%q: error %v", c.head, err)
			continue
		}
		if c.failed {
			continue
		}
		if h.Status != c.status || h.Minor != c.minor || h.ContentLength != c.length || h.Chunked != c.chunked || h.KeepAlive != c.keepAlive {
			t.Errorf("%q: %+v", c.head, h)
		}
	}
	if !IsConnectionToken([]byte("keep-alive, X-Drop"), []byte("x-drop")) || IsConnectionToken([]byte("close"), []byte("x-drop")) {
		t.Error("IsConnectionToken")
	}
}
