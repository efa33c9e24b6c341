package reliability

import (
	"syscall"
	"testing"
	"time"
)

// The fast checks' figures, for the bounds the scenarios check.
const (
	checkInterval = 200 * time.Millisecond
	checkTimeout  = 200 * time.Millisecond
	fall, rise    = 2, 2
	// slack covers the admin API's polling and the machine's hiccups.
	slack = 150 * time.Millisecond
	// arpRetry is Linux's neighbour retransmit time, net.ipv4.neigh.*.retrans_time_ms.
	arpRetry = time.Second
)

// Scenario 1: a backend killed (SIGKILL) during a 20,000-request run.
// http mode: no client sees a failure (a request that lost its backend
// before any response byte is retried elsewhere). tcp mode: at most the
// connections open on the backend at that moment fail, and none after.
func TestBackendKilled(t *testing.T) {
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
			if s.Complete != 20000 {
				t.Errorf("complete %d of 20000", s.Complete)
			}
			if mode == "http" {
				if s.Failed != 0 || s.Non2xx != 0 {
					t.Errorf("http mode: %d failed, %d non-2xx; want none: %+v", s.Failed, s.Non2xx, s.Timeline)
				}
				return
			}
			if s.Failed > open {
				t.Errorf("tcp mode: %d failed, more than the %d connections open on the killed backend", s.Failed, open)
			}
			if _, last, ok := failureWindow(s); ok && last > killOffset+300*time.Millisecond {
				t.Errorf("tcp mode: failures until %s, the backend died at %s: connections opened after it failed too: %+v",
					last, killOffset, s.Timeline)
			}
		})
	}
}

// Scenario 2: a backend's link cut during a run (packets vanish, no
// reset). It is out within fall × interval + the check's timeout; the
// only failures are requests already on it, which end at their timeout;
// it is back after rise good checks once the link returns, and gets
// traffic again.
func TestBackendLinkCut(t *testing.T) {
	for _, mode := range []string{"tcp", "http"} {
		t.Run(mode, func(t *testing.T) {
			// A request stuck on the cut link ends at the balancer's answer
			// timeout (http: 504) or the client's -s (tcp: the balancer
			// only moves bytes).
			const answerTimeout = time.Second
			l := newLab(t, append(modeArgs(mode), "--server-idle", answerTimeout.String())...)
			run := l.cli.bench(t, benchArgs(mode, "-n", "10000000", "-t", "6", "-c", "20", "-r", "-s", "1", l.url)...)
			l.waitServed(t, mode == "http", 2000)
			victim := l.backends[1]
			cutAt := time.Now()
			victim.cut()
			out := l.lb.waitState(t, l.admin, victim.addr(backendPort), "down", 5*time.Second)
			time.Sleep(time.Second) // a second with the link down and the backend out
			before := l.lb.backend(t, l.admin, victim.addr(backendPort))
			healAt := time.Now()
			victim.heal()
			back := l.lb.waitState(t, l.admin, victim.addr(backendPort), "ready", 5*time.Second)
			s := run.result(t)
			after := l.lb.backend(t, l.admin, victim.addr(backendPort))

			cutOffset := cutAt.Sub(s.Start)
			first, last, failed := failureWindow(s)
			row(t, "%s; link cut at %s, out after %s, failures from %s to %s; link back at %s, ready after %s",
				summaryLine(s), cutOffset.Round(time.Millisecond), out.Round(time.Millisecond),
				first, last, healAt.Sub(s.Start).Round(time.Millisecond), back.Round(time.Millisecond))
			if limit := fall*checkInterval + checkTimeout + slack; out > limit {
				t.Errorf("out after %s, want within fall × interval + check timeout = %s", out, limit-slack)
			}
			// The backend's host lost its neighbour entry for the balancer
			// with the carrier; it asks again at its next ARP retry (1 s by
			// default), so the first check can pass that much later.
			if limit := rise*checkInterval + arpRetry + slack; back > limit {
				t.Errorf("back after %s, want within rise × interval + an ARP retry = %s", back, limit-slack)
			}
			if failed && last > cutOffset+out+answerTimeout+2*slack {
				t.Errorf("failures until %s: requests sent after the backend was out (%s) failed too: %+v",
					last, cutOffset+out, s.Timeline)
			}
			if served := func(b int64, r int64) int64 {
				if mode == "http" {
					return r
				}
				return b
			}; served(after.Total, after.Requests) <= served(before.Total, before.Requests) {
				t.Errorf("the backend got no traffic after it came back")
			}
		})
	}
}
