package httpx

import "bytes"

// Cookie is the value of the cookie called name in req's Cookie fields
// ("a=1; b=2", in one field or several, RFC 6265 §5.4), without the
// quotes a value may have; nil when there is none.
func (r *Request) Cookie(name string) []byte {
	var found []byte
	r.eachCookieField(func(h *Header) {
		for pair := range bytes.SplitSeq(h.Value, []byte(";")) {
			k, v, _ := bytes.Cut(trimOWS(pair), []byte("="))
			if found == nil && string(k) == name {
				found = bytes.Trim(v, `"`)
			}
		}
	})
	return found
}

// DropCookie takes the cookie called name out of req's Cookie fields, and
// a field left empty out of its headers: a proxy's own cookie is not the
// server's business (HAProxy's cookie … indirect). The fields it changes
// are written anew, not in the input.
func (r *Request) DropCookie(name string) {
	changed := false
	r.eachCookieField(func(h *Header) {
		var kept []byte
		drop := false
		for pair := range bytes.SplitSeq(h.Value, []byte(";")) {
			pair = trimOWS(pair)
			if k, _, _ := bytes.Cut(pair, []byte("=")); string(k) == name {
				drop = true
				continue
			}
			if len(pair) > 0 {
				if len(kept) > 0 {
					kept = append(kept, "; "...)
				}
				kept = append(kept, pair...)
			}
		}
		if drop {
			h.Value, changed = kept, true
		}
	})
	if changed {
		kept := r.Headers[:0]
		for _, h := range r.Headers {
			if len(h.Value) > 0 || !equalFold(h.Name, "cookie") {
				kept = append(kept, h)
			}
		}
		r.Headers = kept
	}
}

func (r *Request) eachCookieField(fn func(*Header)) {
	for i := range r.Headers {
		if equalFold(r.Headers[i].Name, "cookie") {
			fn(&r.Headers[i])
		}
	}
}
