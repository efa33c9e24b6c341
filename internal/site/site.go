// Package site is the lab's request handler: its three fixed routes, the
// form echo, and static files from a document root or the embedded default
// site. It turns an httpx.Request into an httpx.Response and knows nothing
// of connections.
package site

import (
	"embed"
	"io/fs"
	"time"

	"loadlab/internal/httpx"
)

//go:generate go run ./gen www

//go:embed www
var defaultSite embed.FS

// The lab's fixed answers (the course's http.py).
const (
	rootText   = "Ini Adalah web Server percobaan"
	santaiText = "santai saja"
	videoURL   = "https://youtu.be/katoxpnTf04"
)

// Site answers the lab's routes and serves files from one document root.
// It is safe for concurrent use.
type Site struct {
	files fileSource
}

// fileSource finds a file for a decoded request path.
type fileSource interface {
	serve(path []byte, req *httpx.Request, resp *httpx.Response)
}

// New serves files from the directory root, or from the embedded default
// site when root is empty.
func New(root string) (*Site, error) {
	if root == "" {
		mem, err := loadMemory(mustSub(defaultSite, "www"), time.Now())
		if err != nil {
			return nil, err
		}
		return &Site{files: mem}, nil
	}
	disk, err := openDisk(root)
	if err != nil {
		return nil, err
	}
	return &Site{files: disk}, nil
}

// Serve fills resp for req.
func (s *Site) Serve(req *httpx.Request, resp *httpx.Response) {
	if !knownMethod(req.Method) {
		// RFC 9110 §15.6.2: a method the server does not know is 501;
		// 405 is for a known one that a resource refuses.
		resp.SetText(501, "501 Not Implemented: unknown method\n")
		return
	}
	switch string(req.Path) {
	case "*": // OPTIONS * asks about the server as a whole
		options(resp, "GET, HEAD, POST, OPTIONS")
	case "/":
		fixed(req, resp, 200, rootText)
	case "/santai":
		fixed(req, resp, 200, santaiText)
	case "/video":
		if fixed(req, resp, 302, "") {
			resp.Location = videoURL
		}
	case "/form":
		if string(req.Method) != "POST" {
			refuseMethod(req, resp, "POST, OPTIONS")
			return
		}
		echoForm(req, resp)
	default:
		s.files.serve(req.Path, req, resp)
	}
}

// fixed answers a route that has one text; it reports false when the method
// was refused instead.
func fixed(req *httpx.Request, resp *httpx.Response, status int, text string) bool {
	if !isGetOrHead(req) {
		refuseMethod(req, resp, "GET, HEAD, OPTIONS")
		return false
	}
	resp.SetText(status, text)
	return true
}

func isGetOrHead(req *httpx.Request) bool {
	m := string(req.Method)
	return m == "GET" || m == "HEAD"
}

// knownMethod reports whether m is one of HTTP's methods (RFC 9110 §9,
// and PATCH of RFC 5789).
func knownMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH":
		return true
	}
	return false
}

// refuseMethod answers a method the resource does not serve: OPTIONS gets
// 200 with the methods it does (allow), anything else 405 with them.
func refuseMethod(req *httpx.Request, resp *httpx.Response, allow string) {
	if string(req.Method) == "OPTIONS" {
		options(resp, allow)
		return
	}
	resp.SetText(405, "405 Method Not Allowed\n")
	resp.Allow = allow
}

// options answers OPTIONS: 200, no body, Allow.
func options(resp *httpx.Response, allow string) {
	resp.Status, resp.Allow = 200, allow
	resp.Body = nil
}

func notFound(resp *httpx.Response) { resp.SetText(404, "404 Not Found\n") }

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // dir is a constant of this package
	}
	return sub
}
