package site

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"loadlab/internal/httpx"
)

// A file as a response needs: what it is, how long, and when it changed.
type fileMeta struct {
	contentType  string
	modTime      time.Time
	lastModified string
}

// answerFile applies the rules every static file shares: GET and HEAD only,
// If-Modified-Since, and the headers. It reports whether the body is wanted.
func answerFile(req *httpx.Request, resp *httpx.Response, m *fileMeta) bool {
	if !isGetOrHead(req) {
		methodNotAllowed(resp, "GET, HEAD")
		return false
	}
	resp.ContentType = m.contentType
	resp.LastModified = m.lastModified
	if notModified(req, m.modTime) {
		resp.Status = 304
		return false
	}
	resp.Status = 200
	return true
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
		f := &memoryFile{body: body, fileMeta: fileMeta{
			contentType: contentType(name), modTime: mod, lastModified: mod.Format(httpx.TimeFormat),
		}}
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
		answerFile(req, resp, &f.fileMeta)
		if resp.Status == 200 || resp.Status == 304 {
			resp.Body = f.body // HEAD and 304 announce its length; the server sends no body
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
	mod := info.ModTime().UTC()
	answerFile(req, resp, &fileMeta{contentType: contentType(name), modTime: mod, lastModified: mod.Format(httpx.TimeFormat)})
	switch {
	case resp.Status != 200 && resp.Status != 304:
		f.Close()
	case !resp.HasBody(req):
		f.Close()
		resp.Stream, resp.ContentLength = emptyFile{}, info.Size() // HEAD and 304 announce the length
	case info.Size() > streamAbove:
		resp.Stream, resp.ContentLength = f, info.Size()
	default:
		defer f.Close()
		buf := resp.Scratch[:0]
		if int64(cap(buf)) < info.Size() {
			buf = make([]byte, 0, info.Size())
		}
		buf = buf[:info.Size()]
		if _, err := io.ReadFull(f, buf); err != nil {
			resp.SetText(500, "500 Internal Server Error\n")
			return
		}
		resp.Scratch, resp.Body = buf, buf
	}
}

func (d *diskFiles) open(name string) (*os.File, fs.FileInfo, error) {
	f, err := d.root.Open(name)
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, info, nil
}

func (d *diskFiles) isFile(name string) bool {
	info, err := d.root.Stat(name)
	return err == nil && info.Mode().IsRegular()
}

// emptyFile stands in for a file whose length is announced but whose body is
// not sent (HEAD, 304); the server never reads it.
type emptyFile struct{}

func (emptyFile) Read([]byte) (int, error) { return 0, io.EOF }
func (emptyFile) Close() error             { return nil }
