package httpx

import (
	"bytes"
	"strconv"
	"time"
)

// Validators and conditional requests (RFC 9110 §8.8 and §13), for a
// server of static files: what nginx's not-modified and range filters do.

// ETag is the entity tag nginx gives a static file: its modification
// time and its size in hex, quoted, a strong validator.
func ETag(mod time.Time, size int64) string {
	b := make([]byte, 0, 24)
	b = append(b, '"')
	b = strconv.AppendInt(b, mod.Unix(), 16)
	b = append(b, '-')
	b = strconv.AppendInt(b, size, 16)
	return string(append(b, '"'))
}

// Precondition is what a request's conditional headers decide for a
// resource.
type Precondition int

const (
	Proceed     Precondition = iota // answer as if unconditional
	NotModified                     // 304: the client's copy is current
	Failed                          // 412: a precondition failed
)

// Evaluate applies a GET or HEAD request's preconditions to a resource
// with the entity tag etag and the modification time mod, in the order of
// RFC 9110 §13.2.2: If-Match, else If-Unmodified-Since; then
// If-None-Match, else If-Modified-Since. A date that does not parse is
// ignored, as the RFC says.
func Evaluate(req *Request, etag string, mod time.Time) Precondition {
	if v := req.Header("If-Match"); v != nil {
		if !matchesETag(v, etag, false) {
			return Failed
		}
	} else if t, ok := parseDate(req.Header("If-Unmodified-Since")); ok && mod.Truncate(time.Second).After(t) {
		return Failed
	}
	if v := req.Header("If-None-Match"); v != nil {
		if matchesETag(v, etag, true) {
			return NotModified
		}
		return Proceed // If-Modified-Since is not looked at (§13.1.3)
	}
	if t, ok := parseDate(req.IfModifiedSince); ok && !mod.Truncate(time.Second).After(t) {
		return NotModified
	}
	return Proceed
}

// RangeApplies reports whether a Range goes ahead given the request's
// If-Range (RFC 9110 §13.1.5): with none, yes; with an entity tag, only
// if it is etag, strongly compared; with a date, only if it is exactly
// the resource's modification time.
func RangeApplies(req *Request, etag string, mod time.Time) bool {
	v := trimOWS(req.Header("If-Range"))
	switch {
	case v == nil:
		return true
	case len(v) > 0 && (v[0] == '"' || bytes.HasPrefix(v, []byte("W/"))):
		return !bytes.HasPrefix(v, []byte("W/")) && string(v) == etag
	}
	t, ok := parseDate(v)
	return ok && t.Equal(mod.Truncate(time.Second))
}

// matchesETag reports whether the list (an If-Match or If-None-Match
// value) names etag, or is "*". weak compares without the W/ prefix
// (If-None-Match); strong never matches a weak tag (If-Match).
func matchesETag(list []byte, etag string, weak bool) bool {
	if string(trimOWS(list)) == "*" {
		return true
	}
	for len(list) > 0 {
		list = bytes.TrimLeft(list, " \t,")
		isWeak := bytes.HasPrefix(list, []byte("W/"))
		if isWeak {
			list = list[2:]
		}
		if len(list) == 0 || list[0] != '"' {
			return false // not an entity tag: the list is malformed
		}
		end := bytes.IndexByte(list[1:], '"')
		if end < 0 {
			return false
		}
		tag := list[:end+2]
		list = list[end+2:]
		if string(tag) == etag && (weak || !isWeak) {
			return true
		}
	}
	return false
}

func parseDate(v []byte) (time.Time, bool) {
	if len(v) == 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(TimeFormat, string(trimOWS(v)))
	return t, err == nil
}
