package proxyproto

import (
	"net"
	"testing"
)

func TestAppendThenParse(t *testing.T) {
	src := &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 51000}
	dst := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 44444}
	src6 := &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 51000}
	dst6 := &net.TCPAddr{IP: net.ParseIP("::1"), Port: 44444}
	if got := string(Append(nil, "v1", src, dst)); got != "PROXY TCP4 192.0.2.7 127.0.0.1 51000 44444\r\n" {
		t.Errorf("v1: %q", got)
	}
	if got := string(Append(nil, "v1", src6, dst6)); got != "PROXY TCP6 2001:db8::7 ::1 51000 44444\r\n" {
		t.Errorf("v1 IPv6: %q", got)
	}
	v2 := Append(nil, "v2", src, dst)
	want := "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x07\x7f\x00\x00\x01\xc7\x38\xad\x9c"
	if string(v2) != want {
		t.Errorf("v2: %q", v2)
	}
	for _, tc := range []struct {
		hdr  []byte
		want *net.TCPAddr
	}{{Append(nil, "v1", src, dst), src}, {v2, src}, {Append(nil, "v2", src6, dst6), src6}, {Append(nil, "v1", src6, dst6), src6}} {
		input := append(append([]byte(nil), tc.hdr...), "GET / HTTP/1.0\r\n\r\n"...)
		for cut := 1; cut < len(tc.hdr); cut++ { // a header arriving in pieces needs more, never fails
			if _, n, err := Parse(input[:cut]); n != 0 || err != nil {
				t.Fatalf("%q cut at %d: %d %v", tc.hdr, cut, n, err)
			}
		}
		addr, n, err := Parse(input)
		if err != nil || n != len(tc.hdr) || addr.String() != tc.want.String() {
			t.Errorf("%q: %v %d %v", tc.hdr, addr, n, err)
		}
	}
	if addr, n, err := Parse([]byte("PROXY UNKNOWN\r\nGET")); addr != nil || n != 15 || err != nil {
		t.Errorf("UNKNOWN: %v %d %v", addr, n, err)
	}
	for _, bad := range []string{"GET / HTTP/1.0\r\n", "PROXY TCP4 x y 1 2\r\n", "PROXY TCP4 1.2.3.4\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"} {
		if _, _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
