package reliability

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"loadlab/internal/balancer"
	"loadlab/internal/bench"
	"loadlab/internal/testutil"
)

// Scenario 1: a backend killed (SIGKILL) during a 20,000-request run.
// http mode: no client sees a failure (a request that lost its backend
// before any response byte is retried elsewhere). tcp mode: at most the
// connections open on the backend at that moment fail, and none opened
// after.
func TestBackendKilled(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"tcp", "http"} {
		t.Run(mode, func(t *testing.T) {
			l := newLab(t, modeArgs(mode)...)
			run := l.cli.bench(t, benchArgs(mode, "-n", "20000", "-c", "50", "-r", "-s", "5", l.url)...)
			l.waitServed(t, mode == "http", 5000)
			// The balancer is frozen for the moment of the kill, so the
			// connections counted on the backend are exactly those the kill
			// cuts.
			l.balancer.signal(syscall.SIGSTOP)
			open := l.backends[1].openConns(t, backendPort)
			killedAt := time.Now()
			l.servers[1].kill() // and wait until it is gone
			l.balancer.signal(syscall.SIGCONT)
			s := run.result(t)
			killOffset := killedAt.Sub(s.Start)
			row(t, "%s; killed at %s with %d connections open on it", summaryLine(s), killOffset.Round(time.Millisecond), open)
			// Every one of the 20000 requests is accounted for: a failed
			// attempt takes its ticket, as ab's -r counts it.
			if s.Complete+s.Failed != 20000 {
				t.Errorf("complete %d and failed %d of 20000", s.Complete, s.Failed)
			}
			if mode == "http" {
				if s.Failed != 0 || s.Non2xx != 0 {
					t.Errorf("http mode: %d failed, %d non-2xx; want none: %+v", s.Failed, s.Non2xx, s.Timeline)
				}
				return
			}
			// Connections opened after the kill meet a refused connect and
			// go to another backend; had they failed, failures would pass
			// this count (a count, not a time: a stalled machine moves when
			// failures happen, not how many).
			if s.Failed > open {
				t.Errorf("tcp mode: %d failed, more than the %d connections open on the killed backend", s.Failed, open)
			}
		})
	}
}

// Scenario 2: a backend's link cut during a run (packets vanish, no
// reset). It goes out on its fall-th failed check; the only failures are
// requests already on it, which end at their timeout, at most one per
// client connection; a run sent while it is out meets no failure; once
// the link returns it is back on its rise-th good check and gets traffic
// again. Checks and requests are counted, not timed: a machine that
// stalls moves the times (they are logged for docs/RELIABILITY.md), not
// these counts.
func TestBackendLinkCut(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"tcp", "http"} {
		t.Run(mode, func(t *testing.T) {
			// A request stuck on the cut link ends at the balancer's answer
			// timeout (http: 504) or the client's -s (tcp: the balancer
			// only moves bytes), set alike and well past the detection
			// time, so that no client connection is caught twice.
			const timeout, conns = 2 * time.Second, 20
			l := newLab(t, append(modeArgs(mode), "--server-idle", timeout.String())...)
			load := func(args ...string) []string {
				return benchArgs(mode, append(args, "-c", strconv.Itoa(conns), "-r", "-s", strconv.Itoa(int(timeout.Seconds())), l.url)...)
			}
			run := l.cli.bench(t, load("-n", "10000000", "-t", "8")...)
			l.waitServed(t, mode == "http", 2000)
			victim := l.backends[1]
			addr := victim.addr(backendPort)
			cutAt := time.Now()
			victim.cut()
			wentOut, out := l.lb.waitState(t, l.admin, addr, "down", 5*time.Second)
			while := l.cli.bench(t, load("-n", "2000")...).result(t)
			// The link stays down until the balancer has nothing left on it
			// (the requests stuck there met their timeout), as on a link
			// that does not come back: were it back sooner, TCP would
			// resend them and they would succeed.
			testutil.Eventually(t, 3*timeout, "the connections on the cut link ending", func() bool {
				return l.lb.backend(t, l.admin, addr).Active == 0
			})
			healAt := time.Now()
			victim.heal()
			cameBack, back := l.lb.waitState(t, l.admin, addr, "ready", 5*time.Second)
			again := l.cli.bench(t, load("-n", "2000")...).result(t)
			after := l.lb.backend(t, l.admin, addr)
			s := run.result(t)

			first, last, _ := failureWindow(s)
			row(t, "%s; link cut at %s, out after %s (checks %q), failures from %s to %s; while out: %s; link back at %s, ready after %s (checks %q); then %s, the backend taking %d meanwhile",
				summaryLine(s), cutAt.Sub(s.Start).Round(time.Millisecond), out.Round(time.Millisecond), checksToChange(wentOut),
				first, last, summaryLine(while), healAt.Sub(s.Start).Round(time.Millisecond), back.Round(time.Millisecond),
				checksToChange(cameBack), summaryLine(again), served(after, mode == "http")-served(cameBack, mode == "http"))
			if got, want := checksToChange(wentOut), strings.Repeat("-", fall); !endsStreak(got, want) {
				t.Errorf("went out after checks %q (newest first, + passed, - failed), want %q: out on the fall-th failure", got, want)
			}
			// The backend's host lost its neighbour entry for the balancer
			// with the carrier, so a check may fail after the link is back
			// (until its next ARP retry); the rise good ones count from
			// the last failure.
			if got, want := checksToChange(cameBack), strings.Repeat("+", rise); !endsStreak(got, want) {
				t.Errorf("back after checks %q (newest first), want %q: back on the rise-th good check", got, want)
			}
			// (A 504 counts twice: non-2xx, and failed for its length.)
			if s.Failed > conns || s.Non2xx > conns {
				t.Errorf("%d failed, %d non-2xx: more than the %d connections that can have been on the cut link: %+v",
					s.Failed, s.Non2xx, conns, s.Timeline)
			}
			if while.Failed != 0 || while.Non2xx != 0 {
				t.Errorf("sent while the backend was out: %s; want no failure", summaryLine(while))
			}
			if again.Failed != 0 || again.Non2xx != 0 {
				t.Errorf("sent once it was back: %s; want no failure", summaryLine(again))
			}
			if served(after, mode == "http") <= served(cameBack, mode == "http") {
				t.Errorf("the backend got none of 2000 requests after it came back")
			}
		})
	}
}

// checksToChange are a backend's kept checks up to its last change of
// state, newest first: "+" passed, "-" failed.
func checksToChange(b balancer.BackendStatus) string {
	var outcomes strings.Builder
	for _, c := range b.Checks {
		switch {
		case c.At.After(b.Changed): // made after the change
		case c.OK:
			outcomes.WriteByte('+')
		default:
			outcomes.WriteByte('-')
		}
	}
	return outcomes.String()
}

// endsStreak reports whether checks (newest first) begin with streak and
// the check before it, if one is kept, had the other outcome: the state
// changed on the streak's last check, not before, not later.
func endsStreak(checks, streak string) bool {
	rest, ok := strings.CutPrefix(checks, streak)
	return ok && (rest == "" || rest[0] != streak[0])
}

// Scenario 3: one backend slowed by 200 ms. leastconn and p2c see its
// requests pile up and send it few; round robin, for contrast, keeps
// giving it a quarter, and its clients' p99 shows the delay.
func TestSlowBackend(t *testing.T) {
	t.Parallel()
	l := newLab(t, modeArgs("http")...)
	slow := l.backends[1]
	// The slow backend's server moves to its loopback; a relay on its
	// address holds every piece of a request for delay, as a slow host
	// or a long link would.
	l.servers[1].kill()
	l.servers[1] = slow.start(t, "serve", "--model", "async", "--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(backendPort)), "--quiet")
	var delay atomic.Int64
	delayRelay(t, slow, slow.addr(backendPort), net.JoinHostPort("127.0.0.1", strconv.Itoa(backendPort)), &delay)
	l.lb.waitState(t, l.admin, slow.addr(backendPort), "ready", 5*time.Second)

	measure := func(algo string) (share float64, s *bench.Summary) {
		l.balancer.kill()
		l.balancer = l.startBalancer(t, append(modeArgs("http"), "--algo", algo)...)
		s = l.cli.bench(t, "-k", "-n", "1000000", "-t", "3", "-c", "20", "-s", "5", l.url).result(t)
		var all, onSlow int64
		for _, b := range l.lb.backends(t, l.admin) {
			all += b.Requests
			if b.Addr == slow.addr(backendPort) {
				onSlow = b.Requests
			}
		}
		return float64(onSlow) / float64(all), s
	}
	_, base := measure("leastconn")
	row(t, "no delay, leastconn: %s", summaryLine(base))
	delay.Store(int64(200 * time.Millisecond))
	for _, algo := range []string{"leastconn", "p2c", "roundrobin"} {
		share, s := measure(algo)
		row(t, "200 ms on one backend, %s: its share %.2f%%; %s (p99 without the delay %.1f ms)", algo, 100*share, summaryLine(s), base.Total.P99)
		if s.Failed != 0 || s.Non2xx != 0 {
			t.Errorf("%s: %d failed, %d non-2xx", algo, s.Failed, s.Non2xx)
		}
		// The shares and p99s are rows, not verdicts: they depend on how
		// much CPU the machine had. That leastconn and p2c route around a
		// slow backend is checked by request counts in internal/balancer.
	}
}

// delayRelay listens on listen in the host's namespace and relays each
// connection to target there, holding every piece of the client's bytes
// for delay before passing it on. (tc netem would do this in the kernel;
// the kernel here has no sch_netem.)
func delayRelay(t *testing.T, h *host, listen, target string, delay *atomic.Int64) {
	t.Helper()
	ln, err := h.listen(listen)
	if err != nil {
		t.Fatal(err)
	}
	testutil.ServeEach(t, ln, func(c net.Conn) {
		up, err := h.dial(context.Background(), "tcp", target)
		if err != nil {
			return
		}
		defer up.Close()
		go func() { io.Copy(c, up); c.Close() }()
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				time.Sleep(time.Duration(delay.Load()))
				if _, err := up.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
}

// Scenario 4: every backend down. tcp refuses each client at once (the
// connection is closed), http answers 503 at once; when the backends come
// back, both recover by themselves.
func TestAllBackendsDown(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"tcp", "http"} {
		t.Run(mode, func(t *testing.T) {
			l := newLab(t, modeArgs(mode)...)
			for _, p := range l.servers {
				p.kill()
			}
			for _, a := range l.backendAddrs() {
				l.lb.waitState(t, l.admin, a, "down", 5*time.Second)
			}
			refused, perRequest := l.refusals(t, mode, 200)
			restartedAt := time.Now()
			for i := range l.servers {
				l.startBackend(t, i)
			}
			for _, a := range l.backendAddrs() {
				l.lb.waitState(t, l.admin, a, "ready", 5*time.Second)
			}
			back := time.Since(restartedAt)
			up := l.cli.bench(t, benchArgs(mode, "-n", "5000", "-c", "20", l.url)...).result(t)
			row(t, "all down: %d of 200 requests refused, %s each on average; backends restarted, all ready after %s; then %s",
				refused, perRequest.Round(time.Microsecond), back.Round(time.Millisecond), summaryLine(up))
			if refused != 200 {
				t.Errorf("all down: %d of 200 refused; want every one refused (tcp: closed, http: 503)", refused)
			}
			if perRequest > 20*time.Millisecond {
				t.Errorf("all down: %s per refusal, want fast", perRequest)
			}
			if up.Failed != 0 || up.Non2xx != 0 {
				t.Errorf("after recovery: %s", summaryLine(up))
			}
		})
	}
}

// refusals sends n requests from the client, one connection each, to a
// balancer with no backend, and counts those refused: closed or reset
// without a byte in tcp mode, answered 503 with Retry-After in http mode.
// It also says how long each took on average.
func (l *lab) refusals(t *testing.T, mode string, n int) (refused int, each time.Duration) {
	t.Helper()
	began := time.Now()
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := l.cli.dial(ctx, "tcp", l.lb.addr(balancerPort))
		cancel()
		if err != nil {
			refused++ // refused at connect: the fastest refusal there is
			continue
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")
		got, err := io.ReadAll(c)
		c.Close()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			// not refused: the client was left waiting
		case mode == "tcp" && len(got) == 0:
			refused++
		case mode == "http" && bytes.HasPrefix(got, []byte("HTTP/1.1 503 ")) && bytes.Contains(got, []byte("\r\nRetry-After: ")):
			refused++
		}
	}
	return refused, time.Since(began) / time.Duration(n)
}
