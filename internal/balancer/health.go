package balancer

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"loadlab/internal/httpx"
	"loadlab/internal/proxyproto"
)

// CheckConfig sets the active health checks, as HAProxy's check, inter,
// rise and fall.
type CheckConfig struct {
	Kind     string        `yaml:"kind"`   // none, tcp or http
	Path     string        `yaml:"path"`   // http: the path to GET
	Host     string        `yaml:"host"`   // http: the check's Host; "" for the backend's address
	Expect   string        `yaml:"expect"` // http: the statuses that pass ("200", "2xx", "200-299", a list); "" for 2xx and 3xx
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
	Rise     int           `yaml:"rise"` // passes in a row that bring a down backend back
	Fall     int           `yaml:"fall"` // failures in a row that take a backend down
}

// MinCheckInterval is the shortest check.interval: a backend checked more
// often only costs CPU, and at a nanosecond every check times out.
const MinCheckInterval = 10 * time.Millisecond

func (c *CheckConfig) fillDefaults() {
	if c.Kind == "" {
		c.Kind = "tcp"
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.Interval <= 0 {
		c.Interval = 2 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = min(c.Interval, time.Second)
	}
	// A check ends before the next is due, so a backend is checked once
	// per interval, as HAProxy's inter.
	c.Timeout = min(c.Timeout, c.Interval)
	if c.Rise <= 0 {
		c.Rise = 2
	}
	if c.Fall <= 0 {
		c.Fall = 3
	}
}

func (c *CheckConfig) validate() error {
	switch c.Kind {
	case "none", "tcp", "http":
	default:
		return fmt.Errorf("check kind %q: use none, tcp or http", c.Kind)
	}
	if c.Kind != "http" && (c.Host != "" || c.Expect != "") {
		return errors.New("check host and expect are for http checks; with them, set check kind http (--health-check http)")
	}
	if err := httpx.CheckPath("check path", c.Path); err != nil {
		return err
	}
	if c.Host != "" && !httpx.ValidHost(c.Host) {
		return fmt.Errorf("check host %q: want a host name or address, with a port or not (www.example.com, 10.0.0.2:8080)", c.Host)
	}
	if _, err := expectedStatus(c.Expect, 200); err != nil {
		return err
	}
	return nil
}

// expectedStatus reports whether an http check's answer with status code
// passes, by check.expect, as HAProxy's http-check expect status: a
// comma-separated list of codes (200), classes (2xx) and ranges
// (200-299); "" passes 2xx and 3xx. The error says what in expect cannot
// be read.
func expectedStatus(expect string, code int) (bool, error) {
	if expect == "" {
		return code >= 200 && code <= 399, nil
	}
	ok := false
	for item := range strings.SplitSeq(expect, ",") {
		item = strings.TrimSpace(item)
		lo, hi, err := statusRange(item)
		if err != nil {
			return false, fmt.Errorf("check expect %q: %q is not a status (200), a class (2xx) or a range (200-299)", expect, item)
		}
		ok = ok || code >= lo && code <= hi
	}
	return ok, nil
}

// statusRange reads one item of check.expect as the codes it covers.
func statusRange(item string) (lo, hi int, err error) {
	code := func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil || len(s) != 3 || n < 100 || n > 599 {
			return 0, errors.New("not a status")
		}
		return n, nil
	}
	if len(item) == 3 && (item[1:] == "xx" || item[1:] == "XX") && item[0] >= '1' && item[0] <= '5' {
		n := int(item[0]-'0') * 100
		return n, n + 99, nil
	}
	if a, b, found := strings.Cut(item, "-"); found {
		if lo, err = code(a); err == nil {
			hi, err = code(b)
		}
		if err == nil && hi < lo {
			err = errors.New("an empty range")
		}
		return lo, hi, err
	}
	lo, err = code(item)
	return lo, lo, err
}

// checker runs the active health checks of a balancer's pool.
type checker struct {
	b    *Balancer
	quit chan struct{}
	wg   sync.WaitGroup
}

func startChecker(b *Balancer) *checker {
	c := &checker{b: b, quit: make(chan struct{})}
	c.wg.Go(c.loop)
	return c
}

func (c *checker) stop() {
	close(c.quit)
	c.wg.Wait()
}

// loop starts a round of checks every interval, start to start, and does
// not wait for a round to end: a backend whose checks hang until their
// timeout must not slow the checks of the others. A backend whose last
// check is still running when its next is due is checked again as soon as
// that one ends.
func (c *checker) loop() {
	var inFlight sync.WaitGroup
	defer inFlight.Wait()
	interval := c.b.Config().Check.Interval
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		cfg := c.b.Config().Check
		if cfg.Interval != interval { // a reload changed it
			interval = cfg.Interval
			tick.Reset(interval)
		}
		if cfg.Kind != "none" {
			for _, be := range c.b.pool.All() {
				if be.State() == Maint { // a drained backend is still checked
					continue
				}
				if !be.checking.CompareAndSwap(false, true) {
					be.checkDue.Store(true)
					continue
				}
				inFlight.Go(func() {
					defer be.checking.Store(false)
					for {
						start := time.Now()
						res := probe(be, cfg, c.b.Config().SendProxy, c.b.backendTLS.Load())
						res.At = time.Now()
						res.DurationMS = float64(res.At.Sub(start).Microseconds()) / 1000
						c.record(be, res, cfg)
						if !be.checkDue.Swap(false) {
							return
						}
					}
				})
			}
		}
		select {
		case <-c.quit:
			return
		case <-tick.C:
		}
	}
}

// record applies one result with HAProxy's rise and fall.
func (c *checker) record(be *Backend, res *CheckResult, cfg CheckConfig) {
	if res.Status == "" {
		return // not made for want of this machine's resources: it says nothing of the backend
	}
	be.noteCheck(res)
	if be.freshStreak.Swap(false) {
		be.okStreak, be.failStreak = 0, 0
	}
	if res.OK {
		be.okStreak++
		be.failStreak = 0
		be.suspectUntil.Store(0) // a passing check clears a failed connect
		if be.okStreak >= cfg.Rise && (be.changeState(Down, Ready) || be.changeState(Checking, Ready)) {
			c.b.log.event("backend up", be, res.Detail)
		}
		return
	}
	if st := be.State(); st == Ready || st == Drain {
		be.checksFailed.Add(1) // HAProxy's chkfail: failed checks of a backend that was up
	}
	be.failStreak++
	be.okStreak = 0
	if be.failStreak >= cfg.Fall && be.changeState(Ready, Down) {
		be.checksDown.Add(1) // HAProxy's chkdown
		c.b.log.event("backend down", be, res.Detail)
	}
}

// maxStatusLine is the most a check reads of a response.
const maxStatusLine = 1 << 10

// probe checks one backend the way traffic reaches it: a TCP connect to
// the address the loops connect to (none while a host name is not
// resolved yet), with the PROXY header first when the balancer sends
// one (sendProxy, "v1" or "v2"), as HAProxy's checks do; then, for an
// http check, a GET that must get a status check.expect takes (2xx or
// 3xx by default). The header is a check's
// own: v2's LOCAL command, or v1's UNKNOWN, since no client is behind it
// (the PROXY protocol's spec names health checks for them); a server
// that requires the header then takes the check as it takes traffic.
// Over TLS (t not nil) the check makes the handshake traffic makes, after
// the header: a backend whose certificate fails verification is down.
//
// The result's Status is HAProxy's check_status: the layer the check got
// to (4 the connect, 6 TLS, 7 HTTP) and how it ended there (OK, CON a
// refused or broken connection, TOUT a timeout, RSP an answer that is no
// answer, STS a status check.expect does not take); "" when the check could
// not be made for want of this machine's descriptors or ports.
func probe(be *Backend, cfg CheckConfig, sendProxy string, t *backendTLS) *CheckResult {
	sa := be.sockaddr.Load()
	if sa == nil {
		return checkFailed("L4CON", errUnresolved)
	}
	conn, err := net.DialTimeout("tcp", sa.TCPAddr().String(), cfg.Timeout)
	if err != nil {
		if localFailure(err) {
			return &CheckResult{} // not made: this machine is out of descriptors or ports
		}
		return checkFailed(layer4(err), errors.New(shortErr(err)))
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(cfg.Timeout))
	if sendProxy != "" {
		if _, err := conn.Write(proxyproto.Append(nil, sendProxy, nil, nil)); err != nil {
			return checkFailed(layer4(err), errors.New(shortErr(err)))
		}
	}
	layer := "L4"
	if t != nil {
		tc := tls.Client(conn, t.config(be))
		if err := tc.Handshake(); err != nil {
			return checkFailed(timedOut(err, "L6TOUT", "L6RSP"), errors.New("handshake: "+err.Error()))
		}
		be.noteCertificate(tc)
		defer tc.Close() // close_notify first
		conn, layer = tc, "L6"
	}
	if cfg.Kind != "http" {
		return &CheckResult{OK: true, Status: layer + "OK", Detail: "ok"}
	}
	host := cfg.Host
	if host == "" {
		host = be.Addr()
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: loadlab-check\r\n\r\n", cfg.Path, host); err != nil {
		return checkFailed(timedOut(err, "L7TOUT", "L7RSP"), errors.New(shortErr(err)))
	}
	// Only the status line is read, and no more than maxStatusLine of it:
	// a backend that sends an endless line costs one small buffer.
	line, err := bufio.NewReaderSize(io.LimitReader(conn, maxStatusLine), maxStatusLine).ReadString('\n')
	switch {
	case err == io.EOF && len(line) == maxStatusLine:
		return checkFailed("L7RSP", fmt.Errorf("status line longer than %d bytes", maxStatusLine))
	case err != nil:
		return checkFailed(timedOut(err, "L7TOUT", "L7RSP"), errors.New("no response: "+shortErr(err)))
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") {
		return checkFailed("L7RSP", fmt.Errorf("not HTTP: %.40q", line))
	}
	code, err := strconv.Atoi(f[1])
	if err != nil || len(f[1]) != 3 {
		return checkFailed("L7RSP", fmt.Errorf("status %.10q", f[1]))
	}
	if ok, _ := expectedStatus(cfg.Expect, code); !ok {
		want := cfg.Expect
		if want == "" {
			want = "2xx or 3xx"
		}
		res := checkFailed("L7STS", fmt.Errorf("status %d, want %s", code, want))
		res.Code = code
		return res
	}
	return &CheckResult{OK: true, Status: "L7OK", Code: code, Detail: "ok"}
}

func checkFailed(status string, err error) *CheckResult {
	return &CheckResult{Status: status, Detail: err.Error()}
}

// layer4 names a failed connect or first write: a timeout, or a refused
// or broken connection.
func layer4(err error) string { return timedOut(err, "L4TOUT", "L4CON") }

func timedOut(err error, timeout, other string) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return timeout
	}
	return other
}
