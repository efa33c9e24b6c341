package reliability

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"loadlab/internal/testutil"
)

// Scenario 8: request smuggling shapes sent through `balance --mode http`
// to `serve`: each is refused with 400 and the connection closed, and no
// backend ever sees a request — least of all the one hidden in the body.
func TestSmugglingRefused(t *testing.T) {
	t.Parallel()
	l := newLab(t, modeArgs("http")...)
	// Backends with their access log on: it is what they saw.
	for i := range l.servers {
		l.servers[i].kill()
		l.servers[i] = l.backends[i].start(t, "serve", "--model", "async", "--listen", l.backends[i].addr(backendPort))
	}
	const hidden = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	shapes := []struct{ name, raw string }{
		{"CL.TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden},
		{"TE.CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n" + hidden},
		{"duplicate Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 36\r\n\r\n" + hidden},
		{"Content-Length list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 36\r\n\r\n" + hidden},
		{"obs-fold", "POST / HTTP/1.1\r\nHost: x\r\nX-Pad: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 36\r\n\r\n" + hidden},
		{"space before colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + hidden},
		{"bare LF", "POST / HTTP/1.1\nHost: x\nContent-Length: 36\n\n" + hidden},
		{"bare LF in chunked body", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\n\n" + hidden},
		{"chunk size with 0x", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x0\r\n\r\n" + hidden},
		{"chunk size with +", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+0\r\n\r\n" + hidden},
		{"negative chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n" + hidden},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000000000000000001\r\nA\r\n0\r\n\r\n" + hidden},
		{"chunk longer than its size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nAB\r\n0\r\n\r\n" + hidden},
		{"NUL in chunk extension", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;\x00\r\nHELLO\r\n0\r\n\r\n" + hidden},
	}
	refused := 0
	for _, sh := range shapes {
		status, closed := l.sendRaw(t, sh.raw)
		if status != 400 || !closed {
			t.Errorf("%s: status %d, connection closed %v; want 400 and closed", sh.name, status, closed)
			continue
		}
		refused++
	}
	// Then plain requests until every backend has logged one (a backend
	// just restarted may be passed over for a while): a backend's access
	// log is written in order, so once each has a line of them, every
	// line before is there too, and the logs are shown to record what
	// arrives. Once all the plain requests are logged, any line more is
	// a smuggled one.
	sent := 0
	testutil.Eventually(t, 30*time.Second, "every backend logging a plain request", func() bool {
		resp, err := l.cli.client().Get(l.url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		sent++
		for _, p := range l.servers {
			if p.count("method=") == 0 {
				return false
			}
		}
		return true
	})
	testutil.Eventually(t, 10*time.Second, "every plain request logged", func() bool { return l.backendRequests() >= sent })
	seen := l.backendRequests() - sent
	row(t, "%d of %d smuggling shapes refused with 400; requests of them the backends saw: %d", refused, len(shapes), seen)
	if seen != 0 {
		t.Errorf("the backends saw %d requests of the smuggling shapes", seen)
	}
}

// sendRaw sends raw bytes to the balancer on a new connection from the
// client host and reads one response: its status, and whether the
// balancer then closed the connection.
func (l *lab) sendRaw(t *testing.T, raw string) (status int, closed bool) {
	t.Helper()
	c, err := l.cli.dial(context.Background(), "tcp", l.lb.addr(balancerPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, raw)
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return 0, false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, err = r.ReadByte()
	return resp.StatusCode, err == io.EOF
}

// backendRequests counts the access log lines of all four backends.
func (l *lab) backendRequests() int {
	n := 0
	for _, p := range l.servers {
		n += p.count("method=")
	}
	return n
}

// Scenario 10: the admin API. Host-less, it listens on loopback only, so
// another host cannot reach it; on a routable address with --admin-token
// it refuses requests without the token and never answers another
// origin's page with the backends' data.
func TestAdminExposure(t *testing.T) {
	t.Parallel()
	l := newLab(t, modeArgs("tcp")...)
	l.balancer.kill()
	l.balancer = l.lb.start(t, "balance", "--listen", l.lb.addr(balancerPort), "--admin", ":9000", "--quiet",
		"--backend", l.backendAddrs()[0])
	if _, err := l.cli.client().Get("http://" + l.lb.addr(9000) + "/api/backends"); err == nil {
		t.Errorf("--admin :9000 answered another host")
	}
	if resp, err := l.lb.client().Get("http://127.0.0.1:9000/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("--admin :9000 on the balancer's own loopback: %v", err)
	}

	l.balancer.kill()
	const token = "s3cret-token"
	l.balancer = l.lb.start(t, "balance", "--listen", l.lb.addr(balancerPort), "--admin", l.lb.addr(9000),
		"--admin-token", token, "--quiet", "--backend", l.backendAddrs()[0])
	api := "http://" + l.lb.addr(9000) + "/api/backends"
	get := func(header ...string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, api, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := l.cli.client().Do(req)
		if err != nil {
			t.Fatalf("admin from another host: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	noToken, _ := get()
	wrong, _ := get("Authorization", "Bearer not-it")
	right, body := get("Authorization", "Bearer "+token)
	crossOrigin, crossBody := get("Authorization", "Bearer "+token, "Origin", "http://evil.example")
	row(t, "host-less admin unreachable from another host; with a token: none %d, wrong %d, right %d, right from another origin %d",
		noToken, wrong, right, crossOrigin)
	if noToken != 401 || wrong != 401 {
		t.Errorf("without the right token: %d and %d, want 401", noToken, wrong)
	}
	if right != 200 || !strings.Contains(body, l.backendAddrs()[0]) {
		t.Errorf("with the token: %d %s", right, body)
	}
	if crossOrigin != 403 || strings.Contains(crossBody, l.backendAddrs()[0]) {
		t.Errorf("another origin: %d %s; want 403 and no data", crossOrigin, crossBody)
	}
}
