package httpx

import (
	"path"
	"strings"
	"testing"
)

// FuzzParse checks that no input panics the parser, that it never claims
// more bytes than it was given, and that input handed over in small pieces
// parses exactly as the whole does. Its corpus is in testdata/fuzz and is
// replayed by plain go test.
func FuzzParse(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	f.Add([]byte("POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		whole, werr := parseAllQuiet(in, len(in)+1)
		pieces, perr := parseAllQuiet(in, 3)
		if (werr == nil) != (perr == nil) || (werr != nil && werr.Status != perr.Status) {
			t.Fatalf("whole: %v, in pieces: %v", werr, perr)
		}
		if strings.Join(whole, "|") != strings.Join(pieces, "|") {
			t.Fatalf("whole %q, in pieces %q", whole, pieces)
		}
	})
}

func parseAllQuiet(input []byte, piece int) ([]string, *Error) {
	p := NewParser(DefaultLimits())
	var got []string
	var buf []byte
	for i := 0; i < len(input); {
		end := min(i+piece, len(input))
		buf = append(buf, input[i:end]...)
		i = end
		for {
			req, n, err := p.Parse(buf)
			if err != nil {
				return got, err.(*Error)
			}
			if req == nil {
				break
			}
			if n <= 0 || n > len(buf) {
				panic("parser claimed a wrong number of bytes")
			}
			got = append(got, summary(req))
			buf = buf[n:]
		}
	}
	if len(buf) > 0 {
		got = append(got, "incomplete:"+string(buf))
	}
	return got, nil
}

// FuzzCleanPath holds cleanPath to path.Clean: the same path, a trailing
// slash where the request named a directory, and a refusal exactly when
// a ".." would climb above the root.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "//a//b/", "/a/./b/../c", "/..", "/a/..", "/a/.", "/.a/..b/...", "/a/../../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		p = "/" + p
		got, ok := cleanPath([]byte(p))
		depth, climbs := 0, false
		segs := strings.Split(p[1:], "/")
		for _, s := range segs {
			switch s {
			case "", ".":
			case "..":
				if depth--; depth < 0 {
					climbs = true
				}
			default:
				depth++
			}
		}
		if ok == climbs {
			t.Fatalf("cleanPath(%q): ok %v, but climbs above the root: %v", p, ok, climbs)
		}
		if !ok {
			return
		}
		want := path.Clean(p)
		if last := segs[len(segs)-1]; (last == "" || last == "." || last == "..") && want != "/" {
			want += "/"
		}
		if string(got) != want {
			t.Fatalf("cleanPath(%q) = %q, want %q", p, got, want)
		}
	})
}
