package httpx

import (
	"bytes"
	"strconv"
	"strings"
)

// What a proxy changes in the messages it passes on (RFC 9110 §7.6): the
// hop-by-hop headers go, forwarding headers and Via are added, the body
// is framed anew. Pure functions of the message, for the balancer.

// ProxyAddedHeaders is how many header fields AppendProxyRequest may add
// to what the client sent (X-Forwarded-For, X-Forwarded-Proto, Forwarded,
// Via, Content-Length, Connection, Host), less the ones it replaces.
const ProxyAddedHeaders = 7

// hopByHop are the headers that belong to one connection, not the
// message; Content-Length too, since the proxy frames what it sends.
var hopByHop = []string{"connection", "keep-alive", "proxy-connection", "te", "trailer",
	"transfer-encoding", "upgrade", "proxy-authenticate", "proxy-authorization", "content-length"}

// isHopByHop reports whether name is one of hopByHop.
func isHopByHop(name []byte) bool {
	for _, h := range hopByHop {
		if len(name) == len(h) && bytes.EqualFold(name, []byte(h)) {
			return true
		}
	}
	return false
}

// proxyWrites are the request headers the proxy writes itself, adding to
// what came; and Expect, answered by the proxy, which has the body already.
func proxyWrites(name []byte) bool {
	return bytes.EqualFold(name, []byte("x-forwarded-for")) || bytes.EqualFold(name, []byte("x-forwarded-proto")) ||
		bytes.EqualFold(name, []byte("forwarded")) || bytes.EqualFold(name, []byte("via")) ||
		bytes.EqualFold(name, []byte("expect")) // the proxy has the whole body already
}

// UpgradeWanted is the protocol an HTTP/1.1 request asks to switch its
// connection to (its Upgrade, with "upgrade" in its Connection), as a
// WebSocket handshake does; nil for none. HTTP/1.0's Upgrade is ignored
// (RFC 9110 §7.8), and so is h2c: it needs HTTP2-Settings, a field its
// Connection lists and a proxy therefore drops (RFC 9110 §7.6.1), and RFC
// 9113 deprecates it. (HAProxy 2.6 passes h2c on, HTTP2-Settings and all.)
func UpgradeWanted(req *Request) []byte {
	up := req.Header("Upgrade")
	if req.Minor == 0 || len(up) == 0 || IsConnectionToken(up, []byte("h2c")) {
		return nil
	}
	for _, f := range req.Headers {
		if bytes.EqualFold(f.Name, []byte("connection")) && IsConnectionToken(f.Value, []byte("upgrade")) {
			return up
		}
	}
	return nil
}

// HostsAgree reports whether a request in absolute form names the same
// host as its Host header: letters in either case, and a port the scheme
// implies (80, 443) written or not. A proxy that passed on a request whose
// two disagree would leave the server behind it to choose (RFC 9112
// §3.2.2 tells an origin server to take the target's) while the proxy,
// its logs and its rules went by Host: HAProxy answers 400, and so does
// the balancer. A request in origin form has only Host, and agrees.
func HostsAgree(req *Request) bool {
	t := req.Target
	scheme, defaultPort := "http://", ":80"
	if hasPrefixFold(t, "https://") {
		scheme, defaultPort = "https://", ":443"
	} else if !hasPrefixFold(t, "http://") {
		return true
	}
	authority := t[len(scheme):]
	if end := bytes.IndexAny(authority, "/?#"); end >= 0 {
		authority = authority[:end]
	}
	if at := bytes.LastIndexByte(authority, '@'); at >= 0 {
		return false // userinfo has no place in a request target (RFC 9110 §4.2.4)
	}
	trim := func(h []byte) []byte {
		if len(h) > len(defaultPort) && bytes.EqualFold(h[len(h)-len(defaultPort):], []byte(defaultPort)) {
			return h[:len(h)-len(defaultPort)]
		}
		return h
	}
	return req.Host != nil && bytes.EqualFold(trim(authority), trim(req.Host))
}

// AppendProxyRequest writes req as a proxy sends it on: HTTP/1.1, the
// client's end-to-end headers, forwarding headers added for client (its
// address), proto (http, or https when the proxy ended the client's TLS)
// and self (the proxy's name in Via), the body by Content-Length, the
// connection kept alive, or, when the client asks for an upgrade, the
// Upgrade passed on with "Connection: upgrade".
func AppendProxyRequest(b []byte, req *Request, client, proto, self string) []byte {
	var connection [][]byte
	var xff, fwd, via []byte // each field's lines as one list, as RFC 9110 §5.3 allows
	for _, f := range req.Headers {
		switch {
		case bytes.EqualFold(f.Name, []byte("connection")):
			connection = append(connection, f.Value)
		case bytes.EqualFold(f.Name, []byte("x-forwarded-for")):
			xff = joinList(xff, f.Value)
		case bytes.EqualFold(f.Name, []byte("forwarded")):
			fwd = joinList(fwd, f.Value)
		case bytes.EqualFold(f.Name, []byte("via")):
			via = joinList(via, f.Value)
		}
	}
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, req.Target...)
	b = append(b, " HTTP/1.1\r\n"...)
	for _, f := range req.Headers {
		if isHopByHop(f.Name) || proxyWrites(f.Name) || listed(connection, f.Name) {
			continue
		}
		b = append(append(append(append(b, f.Name...), ": "...), f.Value...), "\r\n"...)
	}
	b = append(appendList(b, "X-Forwarded-For", xff, client), "\r\n"...)
	b = append(append(append(b, "X-Forwarded-Proto: "...), proto...), "\r\n"...)
	b = appendList(b, "Forwarded", fwd, "for=")
	if strings.IndexByte(client, ':') >= 0 {
		b = append(append(append(b, `"[`...), client...), `]"`...)
	} else {
		b = append(b, client...)
	}
	b = append(append(append(b, ";proto="...), proto...), "\r\n"...)
	b = appendList(b, "Via", via, "1.")
	b = strconv.AppendInt(b, int64(req.Minor), 10)
	b = append(append(append(b, ' '), self...), "\r\n"...)
	if len(req.Body) > 0 || req.ContentLength >= 0 || req.Chunked {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(req.Body)), 10)
		b = append(b, "\r\n"...)
	}
	if up := UpgradeWanted(req); up != nil {
		b = append(append(append(b, "Upgrade: "...), up...), "\r\nConnection: upgrade\r\n\r\n"...)
	} else {
		b = append(b, "Connection: keep-alive\r\n\r\n"...)
	}
	return append(b, req.Body...)
}

// InsertHost appends req, a request as AppendProxyRequest wrote it, to
// dst with "Host: host" after its request line: an HTTP/1.1 request must
// carry Host (RFC 9112 §3.2), and one from an HTTP/1.0 client may have
// none, so the proxy names the server it sends it to, as nginx's
// proxy_set_header Host default does.
func InsertHost(dst, req []byte, host string) []byte {
	line := bytes.IndexByte(req, '\n') + 1
	dst = append(dst, req[:line]...)
	dst = append(append(append(dst, "Host: "...), host...), "\r\n"...)
	return append(dst, req[line:]...)
}

// PassedThrough reports whether req's Via names via, a proxy's own
// pseudonym: the request came back round a loop of backends pointing at
// the proxy, and would go round again until a limit stopped it.
func PassedThrough(req *Request, via string) bool {
	for _, f := range req.Headers {
		if bytes.EqualFold(f.Name, []byte("via")) && bytes.Contains(f.Value, []byte(via)) {
			return true
		}
	}
	return false
}

// listed reports whether name is a token of one of the Connection values.
func listed(connection [][]byte, name []byte) bool {
	for _, v := range connection {
		if IsConnectionToken(v, name) {
			return true
		}
	}
	return false
}

// joinList adds v to a list field's value so far.
func joinList(list, v []byte) []byte {
	if len(list) == 0 {
		return v
	}
	return append(append(append([]byte(nil), list...), ", "...), v...)
}

// appendList starts a list header, adding to what came: the caller
// appends the new value and ends the line.
func appendList(b []byte, name string, came []byte, value string) []byte {
	b = append(append(b, name...), ": "...)
	if len(came) > 0 {
		b = append(append(b, came...), ", "...)
	}
	return append(b, value...)
}

// AppendProxyResponseHead writes a response head as a proxy passes it to
// its client: the server's status line and end-to-end headers, self
// added to Via, the body's framing as the client gets it (f; decode when a
// chunked body goes to the client as plain data, ended by the close), and
// the connection's fate.
func AppendProxyResponseHead(b []byte, rh *ResponseHead, f Framing, decode, isHead, keepAlive bool, self string) []byte {
	b = appendProxyStatusAndFields(b, rh, self)
	switch {
	case f == ByLength || isHead && rh.ContentLength >= 0 && !rh.Chunked:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, rh.ContentLength, 10)
		b = append(b, "\r\n"...)
	case f == ByChunks && !decode, isHead && rh.Chunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if keepAlive {
		return append(b, "Connection: keep-alive\r\n\r\n"...)
	}
	return append(b, "Connection: close\r\n\r\n"...)
}

// AppendProxyInterimHead writes an interim (1xx) response head as a proxy
// passes it to its client: the status line and end-to-end headers, self
// added to Via; it has no body and says nothing of the connection, which
// the final answer decides.
func AppendProxyInterimHead(b []byte, rh *ResponseHead, self string) []byte {
	return append(appendProxyStatusAndFields(b, rh, self), "\r\n"...)
}

// AppendProxyUpgradeHead writes a 101 (Switching Protocols) head as a
// proxy passes it to its client: the status line and end-to-end headers,
// self added to Via, and the backend's Upgrade with "Connection:
// upgrade"; the connection is a tunnel from then on.
func AppendProxyUpgradeHead(b []byte, rh *ResponseHead, self string) []byte {
	b = appendProxyStatusAndFields(b, rh, self)
	_, fields, _ := bytes.Cut(rh.Head, []byte("\n"))
	EachField(fields, func(name, value []byte) error {
		if bytes.EqualFold(name, []byte("upgrade")) {
			b = append(append(append(b, "Upgrade: "...), value...), "\r\n"...)
		}
		return nil
	})
	return append(b, "Connection: upgrade\r\n\r\n"...)
}

// appendProxyStatusAndFields writes the status line and the end-to-end
// headers of rh, hop-by-hop ones and those its Connection lists left out,
// with self added to Via.
func appendProxyStatusAndFields(b []byte, rh *ResponseHead, self string) []byte {
	line, fields, _ := bytes.Cut(rh.Head, []byte("\n"))
	b = append(b, "HTTP/1.1 "...)
	b = append(b, bytes.TrimRight(line[9:], "\r")...)
	b = append(b, "\r\n"...)
	var connection [][]byte
	var via []byte
	EachField(fields, func(name, value []byte) error {
		switch {
		case bytes.EqualFold(name, []byte("connection")):
			connection = append(connection, value)
		case bytes.EqualFold(name, []byte("via")):
			via = joinList(via, value)
		}
		return nil
	})
	EachField(fields, func(name, value []byte) error {
		if !isHopByHop(name) && !bytes.EqualFold(name, []byte("via")) && !listed(connection, name) {
			b = append(append(append(append(b, name...), ": "...), value...), "\r\n"...)
		}
		return nil
	})
	b = appendList(b, "Via", via, "1.")
	b = strconv.AppendInt(b, int64(rh.Minor), 10)
	return append(append(append(b, ' '), self...), "\r\n"...)
}
