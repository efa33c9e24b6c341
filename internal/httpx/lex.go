package httpx

import (
	"bytes"
	"fmt"
	"strings"
)

// Byte classes and comparisons from RFC 9110, written out so the hot path
// allocates nothing.

// tokenChars marks the tchar set of RFC 9110 §5.6.2.
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isTokenChar(c byte) bool { return tokenChars[c] }

// IsToken reports whether s is a token (RFC 9110 §5.6.2): a field name,
// a method.
func IsToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return s != ""
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F') }

func unhex(c byte) byte {
	switch {
	case isDigit(c):
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// equalFold compares b with an ASCII string, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func hasPrefixFold(b []byte, s string) bool { return len(b) >= len(s) && equalFold(b[:len(s)], s) }

// trimOWS removes the optional white space around a field value.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// forEachToken calls fn with each comma-separated element of a list value.
func forEachToken(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		if t := trimOWS(v[:i]); len(t) > 0 {
			fn(t)
		}
		if i == len(v) {
			return
		}
		v = v[i+1:]
	}
}

// parseDecimal accepts 1 to 18 digits and nothing else, so no list, sign
// or overflow can slip through: a Content-Length, a range's bounds.
func parseDecimal(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// cleanPath normalizes a decoded path that starts with a slash, in place,
// as nginx does before it maps a request to a file or a location: runs of
// slashes become one, "." segments go, and ".." takes the segment before
// it away; a trailing slash, or one a last "." or ".." implies, stays.
// ok is false when a ".." would climb above the root (nginx's 400).
// Most paths have nothing to clean and are returned as they are.
func cleanPath(p []byte) (clean []byte, ok bool) {
	if !bytes.Contains(p, []byte("//")) && !bytes.Contains(p, []byte("/.")) {
		return p, true
	}
	w := 0 // p[:w] is the path cleaned so far, no trailing slash
	for i := 0; i < len(p); {
		j := i
		for j < len(p) && p[j] == '/' {
			j++
		}
		k := j
		for k < len(p) && p[k] != '/' {
			k++
		}
		seg, last := p[j:k], k == len(p)
		switch string(seg) {
		case "", ".":
		case "..":
			if w == 0 {
				return nil, false
			}
			w = bytes.LastIndexByte(p[:w], '/')
		default:
			p[w] = '/'
			w += 1 + copy(p[w+1:], seg)
			last = false
		}
		if last { // "/a/", "/a/." and "/a/b/.." name a directory
			p[w] = '/'
			w++
		}
		i = k
	}
	return p[:w], true
}

// validHost reports whether v is a Host value RFC 9112 §3.2 allows: empty,
// or uri-host [":" port], where uri-host is an IP literal in brackets or
// a reg-name of unreserved characters, percent-escapes and sub-delims.
// A space, a slash, "@" (userinfo) and the like make it a 400.
func validHost(v []byte) bool {
	host, port := v, []byte(nil)
	if len(v) > 0 && v[0] == '[' {
		end := bytes.IndexByte(v, ']')
		if end < 0 {
			return false
		}
		for _, c := range v[1:end] {
			if !isHex(c) && c != ':' && c != '.' {
				return false
			}
		}
		host, port = nil, v[end+1:]
		if len(port) > 0 {
			if port[0] != ':' {
				return false
			}
			port = port[1:]
		}
	} else if i := bytes.LastIndexByte(v, ':'); i >= 0 {
		host, port = v[:i], v[i+1:]
	}
	for _, c := range port {
		if !isDigit(c) {
			return false
		}
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', isDigit(c), strings.IndexByte("-._~!$&'()*+,;=", c) >= 0:
		case c == '%' && i+2 < len(host) && isHex(host[i+1]) && isHex(host[i+2]):
			i += 2
		default:
			return false
		}
	}
	return true
}

// CheckPath refuses a path that a configuration gives for a request line
// and that cannot go there as it is: one not starting with /, or with a
// character RFC 3986 keeps out of URLs (a space, a quote, <, >, a
// backtick, braces, a bar, a backslash, a caret, a control byte), which
// must be %-escaped. what names the setting in the error.
func CheckPath(what, p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%s %q must start with /", what, p)
	}
	for _, c := range []byte(p) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"<>\\^`{|}", c) >= 0 {
			return fmt.Errorf("%s %q: %q cannot be in a URL as it is; write it %%-escaped (a space is %%20)", what, p, c)
		}
	}
	return nil
}

// ValidHost reports whether h may be a Host field's value: uri-host
// [":" port], as validHost reads it, and not empty.
func ValidHost(h string) bool { return h != "" && validHost([]byte(h)) }
