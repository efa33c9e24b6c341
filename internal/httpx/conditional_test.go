package httpx

import (
	"slices"
	"testing"
	"time"
)

func request(t *testing.T, headers string) *Request {
	t.Helper()
	req, _, err := NewParser(DefaultLimits()).Parse([]byte("GET /f HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n"))
	if err != nil || req == nil {
		t.Fatalf("%q: %v", headers, err)
	}
	return req
}

func TestEvaluate(t *testing.T) {
	mod := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	etag := ETag(mod, 31)
	if etag != `"6b0fec20-1f"` { // nginx's form: mtime and size in hex
		t.Errorf("ETag %s, want \"6b0fec20-1f\"", etag)
	}
	at, before, after := mod.Format(TimeFormat), mod.Add(-time.Hour).Format(TimeFormat), mod.Add(time.Hour).Format(TimeFormat)
	for _, tc := range []struct {
		headers string
		want    Precondition
	}{
		{"", Proceed},
		{"If-None-Match: " + etag + "\r\n", NotModified},
		{"If-None-Match: W/" + etag + "\r\n", NotModified}, // weak comparison
		{`If-None-Match: "a", ` + etag + "\r\n", NotModified},
		{"If-None-Match: *\r\n", NotModified},
		{`If-None-Match: "nomatch"` + "\r\nIf-Modified-Since: " + after + "\r\n", Proceed}, // If-None-Match wins (§13.1.3)
		{"If-Modified-Since: " + at + "\r\n", NotModified},
		{"If-Modified-Since: " + after + "\r\n", NotModified},
		{"If-Modified-Since: " + before + "\r\n", Proceed},
		{"If-Modified-Since: yesterday\r\n", Proceed}, // not a date: ignored
		{"If-Match: " + etag + "\r\n", Proceed},
		{"If-Match: W/" + etag + "\r\n", Failed}, // strong comparison
		{`If-Match: "other"` + "\r\n", Failed},
		{"If-Match: *\r\n", Proceed},
		{"If-Unmodified-Since: " + before + "\r\n", Failed},
		{"If-Unmodified-Since: " + at + "\r\n", Proceed},
		{`If-Match: "other"` + "\r\nIf-None-Match: " + etag + "\r\n", Failed}, // If-Match first
	} {
		if got := Evaluate(request(t, tc.headers), etag, mod); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.headers, got, tc.want)
		}
	}
}

func TestRangeApplies(t *testing.T) {
	mod := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	etag := ETag(mod, 31)
	for _, tc := range []struct {
		headers string
		want    bool
	}{
		{"", true},
		{"If-Range: " + etag + "\r\n", true},
		{"If-Range: W/" + etag + "\r\n", false},
		{`If-Range: "old"` + "\r\n", false},
		{"If-Range: " + mod.Format(TimeFormat) + "\r\n", true},
		{"If-Range: " + mod.Add(time.Second).Format(TimeFormat) + "\r\n", false}, // exactly the time, or no range
	} {
		if got := RangeApplies(request(t, tc.headers), etag, mod); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.headers, got, tc.want)
		}
	}
}

func TestParseRange(t *testing.T) {
	const size = 100
	for _, tc := range []struct {
		v    string
		want []ByteRange
		ok   bool
	}{
		{"bytes=0-9", []ByteRange{{0, 10}}, true},
		{"bytes=90-", []ByteRange{{90, 10}}, true},
		{"bytes=-5", []ByteRange{{95, 5}}, true},
		{"bytes=-500", []ByteRange{{0, 100}}, true},
		{"bytes=95-200", []ByteRange{{95, 5}}, true},
		{"bytes=0-0, 2-3", []ByteRange{{0, 1}, {2, 2}}, true},
		{"BYTES = 0-1", nil, false},
		{"bytes=100-", nil, true}, // none satisfiable: 416
		{"bytes=-0", nil, true},
		{"bytes=5-1", nil, true}, // last before first: skipped, so none left: 416
		{"bytes=5-1,0-1", []ByteRange{{0, 2}}, true},
		{"bytes=a-b", nil, true}, // cannot be read: 416, as nginx and net/http answer
		{"bytes=1-2-3", nil, true},
		{"bytes=-", nil, true},
		{"bytes=0-1,x", nil, true},
		{"bytes=99999999999999999999-", nil, true},
		{"bytes=,0-1,,2-3", []ByteRange{{0, 2}, {2, 2}}, true}, // empty list elements are allowed
		{"items=0-1", nil, false},
		{"bytes=", nil, false},
		{"bytes=0-1,2-3,4-5,6-7,8-9,10-11,12-13,14-15,16-17,18-19,20-21,22-23,24-25,26-27,28-29,30-31,32-33", nil, false},
	} {
		got, ok := ParseRange([]byte(tc.v), size)
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("%q: %v %v, want %v %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
	if got := string(AppendContentRange(nil, &ByteRange{95, 5}, size)); got != "bytes 95-99/100" {
		t.Errorf("Content-Range %s", got)
	}
	if got := string(AppendContentRange(nil, nil, size)); got != "bytes */100" {
		t.Errorf("unsatisfiable Content-Range %s", got)
	}
}
