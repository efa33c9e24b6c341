// Package bench is loadlab's load generator: ApacheBench's options and
// report, on an engine that speaks raw HTTP/1.x over TCP from every core,
// records every request's timings in HDR histograms, and can hold an open
// request rate. A Work describes a run; Run turns it into a Summary; the
// report functions turn a Summary into text, JSON, CSV or a table.
package bench

import (
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"loadlab"
)

// Work is everything one run needs. The zero value of a field means ab's
// default for it.
type Work struct {
	// URL is the target, http://host[:port]/path.
	URL string
	// Requests is how many requests to send, exactly; ab's -n. With
	// TimeLimit and no Requests, 50000, as ab.
	Requests int
	// Concurrency is how many requests are in flight at once; ab's -c.
	// With Rate it caps the connections in flight.
	Concurrency int
	// TimeLimit ends the run after this long; ab's -t.
	TimeLimit time.Duration
	// Timeout bounds each request from its start to its last byte; ab's
	// -s (30 s), which ab applies to any wait for a socket instead.
	Timeout time.Duration
	// KeepAlive reuses connections; ab's -k.
	KeepAlive bool
	// HTTP11 sends HTTP/1.1 requests instead of ab's HTTP/1.0.
	HTTP11 bool
	// Method is the request method; "GET", or "POST"/"PUT" with a Body.
	Method string
	// Body and ContentType are sent with every request (ab's -p/-u and -T).
	Body        []byte
	ContentType string
	// Headers are extra "Name: value" lines (ab's -H); a Host, User-Agent
	// or Accept here replaces the default one.
	Headers []string
	// Cookies and BasicAuth (user:password) are ab's -C and -A.
	Cookies   []string
	BasicAuth string
	// ContinueOnError keeps going after receive errors (ab's -r) instead of
	// ending the run as ab does.
	ContinueOnError bool
	// VariableLength accepts responses of varying length (ab's -l) instead
	// of counting them as Length failures.
	VariableLength bool
	// Rate, when above zero, sends requests at this many per second (an
	// open model); latency counts from each request's intended send time,
	// so a server stall shows instead of hiding (coordinated omission).
	Rate float64
	// Warmup requests are sent first and not counted.
	Warmup int
	// KeepSamples keeps every request's timings, for ab's -g file.
	KeepSamples bool
	// Verbosity is ab's -v: from 2, each response's first bytes ("LOG:
	// header received") and a warning for a non-2xx status; from 3, every
	// status ("LOG: Response code"). They go to Trace.
	Verbosity int
	Trace     io.Writer
	// Interval, when above zero, adds a timeline to the summary: requests
	// completed, failed and non-2xx in each interval of the run.
	Interval time.Duration
	// TLS is how an https:// URL's connections speak TLS (ab's -Z, -f, -I).
	TLS TLS
	// Proxy is ab's -X proxy:port: connections go there, asking for the
	// URL whole; ProxyAuth (-P, user:password) is sent to it.
	Proxy, ProxyAuth string
	// LocalAddr is ab's -B: the address connections are made from.
	LocalAddr string
	// WindowSize is ab's -b: each socket's send and receive buffer, bytes.
	WindowSize int
}

// target is a parsed URL: where to connect and what to ask for.
type target struct {
	host     string // as the user wrote it, for Host and the report
	port     int
	addr     string // host:port to dial
	path     string
	hostHead string // the Host header's value
	tls      bool   // https://
	proxy    string // -X: where connections go instead; the request line then names the URL whole
}

// requestTarget is what the request line asks for: the path, or through a
// proxy the whole URL, as ab writes it.
func (t *target) requestTarget() string {
	if t.proxy != "" {
		return "http://" + t.hostHead + t.path
	}
	return t.path
}

// through sends t's connections to w's proxy, when there is one.
func (w *Work) through(t *target) error {
	if w.Proxy == "" {
		if w.ProxyAuth != "" {
			return usage("-P is the proxy's authentication: give the proxy with -X proxy:port")
		}
		return nil
	}
	host, port, err := net.SplitHostPort(w.Proxy)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		return usage("-X %q: want proxy:port, like 127.0.0.1:3128", w.Proxy)
	}
	if t.tls {
		return usage("-X with an https:// URL: ab's proxy speaks plain HTTP only (no CONNECT)")
	}
	t.proxy, t.addr = w.Proxy, w.Proxy
	return nil
}

// UsageError is a mistake in what the user asked for (ab exits 22 on these).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usage(format string, args ...any) error { return &UsageError{fmt.Sprintf(format, args...)} }

// parseTarget accepts ab's URL form, http[s]://host[:port]/path; the path
// may be left out.
func parseTarget(raw string) (*target, error) {
	if !strings.Contains(raw, "://") && raw != "" && raw[0] != '/' {
		raw = "http://" + raw // as ab takes 127.0.0.1:8080/path
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, usage("invalid URL %q (want http://host[:port]/path or https://...)", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, usage("unsupported scheme %q in %q (loadlab bench speaks http:// and https://)", u.Scheme, raw)
	}
	t := &target{host: u.Hostname(), port: 80, path: u.EscapedPath(), tls: u.Scheme == "https"}
	defaultPort := 80
	if t.tls {
		t.port, defaultPort = 443, 443
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, usage("invalid port %q in %q", p, raw)
		}
		t.port = n
	}
	if t.path == "" {
		t.path = "/"
	}
	if u.RawQuery != "" {
		t.path += "?" + u.RawQuery
	}
	t.addr = net.JoinHostPort(t.host, strconv.Itoa(t.port))
	t.hostHead = u.Host
	if t.port == defaultPort {
		t.hostHead = u.Hostname()
		if strings.Contains(t.hostHead, ":") {
			t.hostHead = "[" + t.hostHead + "]"
		}
	}
	return t, nil
}

// Check reports what is wrong with w, if anything, before a run starts.
func (w Work) Check() error {
	if err := w.normalize(); err != nil {
		return err
	}
	t, err := parseTarget(w.URL)
	if err != nil {
		return err
	}
	if err := w.through(t); err != nil {
		return err
	}
	_, err = w.TLS.config("")
	return err
}

// RequestBytes is the request exactly as the run sends it.
func (w Work) RequestBytes() ([]byte, error) {
	if err := w.normalize(); err != nil {
		return nil, err
	}
	t, err := parseTarget(w.URL)
	if err != nil {
		return nil, err
	}
	if err := w.through(t); err != nil {
		return nil, err
	}
	return w.buildRequest(t), nil
}

// normalize fills ab's defaults and checks the combination.
func (w *Work) normalize() error {
	if w.TimeLimit > 0 && w.Requests == 0 {
		w.Requests = 50000
	}
	if w.Requests == 0 {
		w.Requests = 1
	}
	if w.Concurrency == 0 {
		w.Concurrency = 1
	}
	if w.Timeout == 0 {
		w.Timeout = 30 * time.Second
	}
	switch {
	case w.Requests < 0:
		return usage("-n must be positive")
	case w.Concurrency < 0:
		return usage("-c must be positive")
	case w.Concurrency > w.Requests && w.Rate == 0:
		return usage("cannot use concurrency level greater than total number of requests (-c %d > -n %d)", w.Concurrency, w.Requests)
	case w.Rate < 0:
		return usage("--rate must be positive")
	case w.Warmup < 0:
		return usage("--warmup must not be negative")
	case w.Interval < 0 || w.Interval > 0 && w.Interval < time.Millisecond:
		return usage("--timeline %v: want an interval of 1ms or more, like 100ms", w.Interval)
	case w.WindowSize < 0:
		return usage("-b %d: want a buffer size in bytes", w.WindowSize)
	case w.LocalAddr != "" && net.ParseIP(w.LocalAddr) == nil:
		return usage("-B %q: want a local IP address to connect from, like 127.0.0.2", w.LocalAddr)
	}
	if w.Method == "" {
		w.Method = "GET"
		if w.Body != nil {
			w.Method = "POST"
		}
	}
	return nil
}

// buildRequest writes the request once, in ab's order: request line,
// Connection, Cookie, Authorization, the body's headers, the user's
// headers, then Host, User-Agent and Accept unless the user gave them.
func (w *Work) buildRequest(t *target) []byte {
	proto := "HTTP/1.0"
	if w.HTTP11 {
		proto = "HTTP/1.1"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s\r\n", w.Method, t.requestTarget(), proto)
	switch {
	case w.KeepAlive && !w.HTTP11:
		b.WriteString("Connection: Keep-Alive\r\n")
	case !w.KeepAlive && w.HTTP11:
		b.WriteString("Connection: close\r\n")
	}
	if len(w.Cookies) > 0 {
		b.WriteString("Cookie: " + strings.Join(w.Cookies, "; ") + "\r\n")
	}
	if w.ProxyAuth != "" {
		b.WriteString("Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(w.ProxyAuth)) + "\r\n")
	}
	if w.BasicAuth != "" {
		b.WriteString("Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(w.BasicAuth)) + "\r\n")
	}
	if w.Body != nil {
		ct := w.ContentType
		if ct == "" {
			ct = "text/plain"
		}
		fmt.Fprintf(&b, "Content-length: %d\r\nContent-type: %s\r\n", len(w.Body), ct)
	}
	given := map[string]bool{}
	for _, h := range w.Headers {
		b.WriteString(h + "\r\n")
		if n, _, ok := strings.Cut(h, ":"); ok {
			given[strings.ToLower(strings.TrimSpace(n))] = true
		}
	}
	if !given["host"] {
		b.WriteString("Host: " + t.hostHead + "\r\n")
	}
	if !given["user-agent"] {
		b.WriteString("User-Agent: " + loadlab.ServerHeader + "\r\n")
	}
	if !given["accept"] {
		b.WriteString("Accept: */*\r\n")
	}
	b.WriteString("\r\n")
	return append([]byte(b.String()), w.Body...)
}
