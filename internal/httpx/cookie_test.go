package httpx

import (
	"strings"
	"testing"
)

func TestCookieFoundAndDropped(t *testing.T) {
	for _, tc := range []struct {
		fields []string // the request's Cookie fields
		value  string   // SERVERID's value, "-" for none
		after  []string // the Cookie fields once SERVERID is dropped
	}{
		{nil, "-", nil},
		{[]string{"SERVERID=b1"}, "b1", nil},
		{[]string{`SERVERID="b1"`}, "b1", nil},
		{[]string{"lang=id; SERVERID=b1; theme=dark"}, "b1", []string{"lang=id; theme=dark"}},
		{[]string{"lang=id;SERVERID=b1"}, "b1", []string{"lang=id"}},
		{[]string{"lang=id", "SERVERID=b2; x=1"}, "b2", []string{"lang=id", "x=1"}},
		{[]string{"serverid=b1; MYSERVERID=b2"}, "-", []string{"serverid=b1; MYSERVERID=b2"}},
		{[]string{"SERVERID=; a=1"}, "-", []string{"a=1"}}, // an empty value names nothing
		{[]string{"SERVERID=b1; SERVERID=b2"}, "b1", nil},
	} {
		raw := "GET / HTTP/1.1\r\nHost: x\r\n"
		for _, f := range tc.fields {
			raw += "Cookie: " + f + "\r\n"
		}
		raw += "Accept: */*\r\n\r\n"
		req, _, err := NewParser(DefaultLimits()).Parse([]byte(raw))
		if err != nil || req == nil {
			t.Fatalf("%q: %v", raw, err)
		}
		v := req.Cookie("SERVERID")
		if got := string(v); v == nil && tc.value != "-" || v != nil && got != tc.value {
			t.Errorf("%q: SERVERID %q (nil %v), want %q", tc.fields, got, v == nil, tc.value)
		}
		req.DropCookie("SERVERID")
		var after []string
		for _, h := range req.Headers {
			if strings.EqualFold(string(h.Name), "cookie") {
				after = append(after, string(h.Value))
			}
		}
		if strings.Join(after, "|") != strings.Join(tc.after, "|") || string(req.Header("Accept")) != "*/*" {
			t.Errorf("%q: after the drop %q, want %q (and Accept kept)", tc.fields, after, tc.after)
		}
	}
}
