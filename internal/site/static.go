package site

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"loadlab/internal/httpx"
)

// A file as a response needs: what it is, how long, when it changed, and
// its entity tag.
type fileMeta struct {
	contentType  string
	modTime      time.Time
	lastModified string
	etag         string
	size         int64
}

func newFileMeta(name string, mod time.Time, size int64) fileMeta {
	mod = mod.UTC()
	return fileMeta{contentType: contentType(name), modTime: mod, lastModified: mod.Format(httpx.TimeFormat),
		etag: httpx.ETag(mod, size), size: size}
}

// fileMethods are what a static file answers.
const fileMethods = "GET, HEAD, OPTIONS"

// answerFile applies the rules every static file shares, as nginx's
// static, not-modified and range filters do: GET and HEAD (OPTIONS says
// so), the validators (Last-Modified, ETag), the conditional headers
// (304, 412), and Range (206, 416, Accept-Ranges). It sets resp's status
// and headers, and says what of the file the body carries: send is false
// for none; ranges is nil for the whole file, else the parts of a 206.
func answerFile(req *httpx.Request, resp *httpx.Response, m *fileMeta) (ranges []httpx.ByteRange, send bool) {
	if !isGetOrHead(req) {
		refuseMethod(req, resp, fileMethods)
		return nil, false
	}
	resp.ContentType, resp.LastModified, resp.ETag = m.contentType, m.lastModified, m.etag
	switch httpx.Evaluate(req, m.etag, m.modTime) {
	case httpx.NotModified:
		resp.Status = 304 // with the validators, as nginx's 304
		return nil, false
	case httpx.Failed:
		resp.SetText(412, "412 Precondition Failed\n")
		resp.LastModified, resp.ETag = "", "" // an error's answer, not the file's, as nginx's
		return nil, false
	}
	resp.Status, resp.AcceptRanges = 200, true
	v := req.Header("Range")
	if v == nil || !httpx.RangeApplies(req, m.etag, m.modTime) {
		return nil, true
	}
	ranges, ok := httpx.ParseRange(v, m.size)
	switch {
	case !ok:
		return nil, true // a Range that cannot be read is ignored (RFC 9110 §14.2)
	case len(ranges) == 0:
		resp.SetText(416, "416 Range Not Satisfiable\n")
		resp.LastModified, resp.ETag, resp.AcceptRanges = "", "", false
		resp.ContentRange = string(httpx.AppendContentRange(nil, nil, m.size))
		return nil, false
	}
	resp.Status, resp.AcceptRanges = 206, false // as nginx: Accept-Ranges goes with the whole file
	if len(ranges) == 1 {
		resp.ContentRange = string(httpx.AppendContentRange(nil, &ranges[0], m.size))
	}
	return ranges, true
}

// maxMultipart bounds the parts of a file read into memory for a
// multipart/byteranges answer; past it the whole file is sent (200), as
// RFC 9110 allows a server to ignore Range.
const maxMultipart = 1 << 20

// answerParts answers a request for several ranges of a file with a
// multipart/byteranges body (nginx's choice too, rather than the whole
// file); part reads one range. It reports false when the parts are too
// large, and resp is left for the whole file.
func answerParts(resp *httpx.Response, m *fileMeta, ranges []httpx.ByteRange, part func(httpx.ByteRange) ([]byte, error)) bool {
	var total int64
	for _, r := range ranges {
		total += r.N
	}
	if total > maxMultipart {
		resp.Status = 200
		return false
	}
	boundary := nextBoundary()
	body, err := httpx.AppendByteranges(resp.Scratch[:0], boundary, m.contentType, m.size, ranges, part)
	if err != nil {
		resp.SetText(500, "500 Internal Server Error\n")
		return true
	}
	resp.Scratch, resp.Body = body, body
	resp.ContentType = "multipart/byteranges; boundary=" + boundary
	return true
}

// boundaries numbers the multipart boundaries, as nginx's do: a boundary
// must not occur in the parts, and twenty digits after a fixed prefix
// never lands inside the bytes of a file by chance.
var boundaries atomic.Uint64

func nextBoundary() string {
	return fmt.Sprintf("loadlab%020d", boundaries.Add(1))
}

// redirectToDir answers a directory named without its trailing slash, as
// nginx does, so relative links inside it work.
func redirectToDir(req *httpx.Request, resp *httpx.Response, p string) {
	resp.SetText(301, "301 Moved Permanently\n")
	loc := p + "/"
	if len(req.Query) > 0 {
		loc += "?" + string(req.Query)
	}
	resp.Location = loc
}

// memoryFiles is a document root read whole into memory at start: the
// embedded default site, whose files never change.
type memoryFiles struct {
	files map[string]*memoryFile // by request path: "/page.html", "/images/"
	dirs  map[string]bool        // directories with an index.html, named without the slash
}

type memoryFile struct {
	fileMeta
	body []byte
}

func loadMemory(fsys fs.FS, mod time.Time) (*memoryFiles, error) {
	m := &memoryFiles{files: map[string]*memoryFile{}, dirs: map[string]bool{}}
	mod = mod.UTC().Truncate(time.Second)
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		f := &memoryFile{body: body, fileMeta: newFileMeta(name, mod, int64(len(body)))}
		m.files["/"+name] = f
		if dir := path.Dir(name); path.Base(name) == "index.html" && dir != "." {
			m.files["/"+dir+"/"] = f
			m.dirs["/"+dir] = true // "/dir" redirects to "/dir/", which has a page
		}
		return nil
	})
	return m, err
}

func (m *memoryFiles) serve(p []byte, req *httpx.Request, resp *httpx.Response) {
	f, ok := m.files[string(p)]
	switch {
	case ok:
		ranges, send := answerFile(req, resp, &f.fileMeta)
		switch {
		case resp.Status == 304:
			resp.Body = f.body // not sent: a 304 has no body
		case !send:
		case len(ranges) == 1:
			resp.Body = f.body[ranges[0].Start : ranges[0].Start+ranges[0].N]
		case len(ranges) > 1:
			if !answerParts(resp, &f.fileMeta, ranges, func(r httpx.ByteRange) ([]byte, error) { return f.body[r.Start : r.Start+r.N], nil }) {
				resp.Body = f.body
			}
		default:
			resp.Body = f.body // HEAD announces its length; the server sends no body
		}
	case m.dirs[string(p)]:
		redirectToDir(req, resp, string(p))
	default:
		notFound(resp)
	}
}

// diskFiles serves a directory through os.Root, which refuses any name that
// resolves outside it: "..", absolute paths and symlinks leading out.
type diskFiles struct {
	root *os.Root
}

// streamAbove is the size from which a file is streamed from disk instead of
// read into memory for the response.
const streamAbove = 64 << 10

func openDisk(dir string) (*diskFiles, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, errors.New("document root " + dir + ": " + errText(err) + " (give --root an existing directory)")
	}
	return &diskFiles{root: root}, nil
}

func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func (d *diskFiles) serve(p []byte, req *httpx.Request, resp *httpx.Response) {
	name := strings.TrimPrefix(string(p), "/")
	if name == "" || strings.HasSuffix(name, "/") {
		name += "index.html" // "file.html/" becomes "file.html/index.html": not found
	}
	f, info, err := d.open(name)
	if err != nil {
		notFound(resp)
		return
	}
	if info.IsDir() {
		f.Close()
		if d.isFile(name + "/index.html") {
			redirectToDir(req, resp, string(p))
		} else {
			notFound(resp) // no directory listings
		}
		return
	}
	m := newFileMeta(name, info.ModTime(), info.Size())
	ranges, send := answerFile(req, resp, &m)
	if len(ranges) > 1 {
		defer f.Close()
		if answerParts(resp, &m, ranges, func(r httpx.ByteRange) ([]byte, error) { return readRange(f, r) }) {
			return
		}
		ranges = nil // too large for parts: the whole file
	}
	start, n := int64(0), info.Size()
	if len(ranges) == 1 {
		start, n = ranges[0].Start, ranges[0].N
	}
	switch {
	case !send:
		f.Close()
	case !resp.HasBody(req):
		f.Close()
		resp.Stream, resp.ContentLength = emptyFile{}, n // HEAD announces the length
	case n > streamAbove:
		if _, err := f.Seek(start, io.SeekStart); err != nil {
			f.Close()
			resp.SetText(500, "500 Internal Server Error\n")
			return
		}
		resp.Stream, resp.ContentLength = f, n // from start; the server sends n bytes
	default:
		defer f.Close()
		buf := resp.Scratch[:0]
		if int64(cap(buf)) < n {
			buf = make([]byte, 0, n)
		}
		buf = buf[:n]
		if _, err := f.ReadAt(buf, start); err != nil {
			resp.SetText(500, "500 Internal Server Error\n")
			return
		}
		resp.Scratch, resp.Body = buf, buf
	}
}

// readRange reads one range of a file.
func readRange(f *os.File, r httpx.ByteRange) ([]byte, error) {
	b := make([]byte, r.N)
	_, err := f.ReadAt(b, r.Start)
	return b, err
}

// open opens a regular file or a directory of the root. It opens
// without blocking and refuses anything else, as nginx does ("is not a
// regular file": 404): opening a named pipe waits for a writer, and on
// an event loop that wait would hold every other client too.
func (d *diskFiles) open(name string) (*os.File, fs.FileInfo, error) {
	f, err := d.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() && !info.IsDir() {
		err = errNotRegular
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, info, nil
}

var errNotRegular = errors.New("not a regular file")

func (d *diskFiles) isFile(name string) bool {
	info, err := d.root.Stat(name)
	return err == nil && info.Mode().IsRegular()
}

// emptyFile stands in for a file whose length is announced but whose body is
// not sent (HEAD, 304); the server never reads it.
type emptyFile struct{}

func (emptyFile) Read([]byte) (int, error) { return 0, io.EOF }
func (emptyFile) Close() error             { return nil }
