package reliability

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"loadlab/internal/testutil"
)

// Scenario 5a: the balancer's configuration reloaded (SIGHUP) ten times
// during a run, each time with other weights and algorithm: no client
// sees a failure.
func TestReloadDuringRun(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"tcp", "http"} {
		t.Run(mode, func(t *testing.T) {
			l := newLab(t, modeArgs(mode)...)
			conf := filepath.Join(t.TempDir(), "balancer.yaml")
			writeConf := func(i int) {
				algo := []string{"roundrobin", "weighted", "leastconn"}[i%3]
				var b strings.Builder
				fmt.Fprintf(&b, "mode: %s\nalgo: %s\ncheck: {kind: tcp, interval: 200ms, timeout: 200ms, rise: 2, fall: 2}\nbackends:\n", mode, algo)
				for j, a := range l.backendAddrs() {
					fmt.Fprintf(&b, "  - addr: %s\n    weight: %d\n", a, 1+(i+j)%3)
				}
				if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			writeConf(0)
			l.balancer.kill()
			l.balancer = l.lb.start(t, "balance", "--listen", l.lb.addr(balancerPort), "--admin", l.admin, "--quiet", "--config", conf)

			run := l.cli.bench(t, benchArgs(mode, "-n", "20000", "-c", "50", "-r", "-s", "5", l.url)...)
			l.waitServed(t, mode == "http", 2000)
			for i := 1; i <= 10; i++ {
				writeConf(i)
				l.balancer.signal(syscall.SIGHUP)
				testutil.Eventually(t, 10*time.Second, fmt.Sprintf("reload %d", i), func() bool { return l.balancer.count("reloaded") >= i })
				time.Sleep(50 * time.Millisecond) // the pace of the reloads: traffic between them
			}
			s := run.result(t)
			row(t, "10 reloads during the run: %s", summaryLine(s))
			if n := l.balancer.count("reloaded"); n != 10 {
				t.Errorf("%d reloads done, want 10: %s", n, l.balancer.output())
			}
			if s.Complete != 20000 || s.Failed != 0 || s.Non2xx != 0 {
				t.Errorf("reloads: %s; want 20000 complete, none failed", summaryLine(s))
			}
		})
	}
}

// Scenario 5b: a rolling restart of all four backends during a run, each
// drained, stopped (SIGTERM, which lets what it has finish), started
// again and put back: no client sees a failure.
func TestRollingRestart(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"tcp", "http"} {
		t.Run(mode, func(t *testing.T) {
			l := newLab(t, modeArgs(mode)...)
			run := l.cli.bench(t, benchArgs(mode, "-n", "10000000", "-t", "60", "-c", "50", "-r", "-s", "5", l.url)...)
			l.waitServed(t, mode == "http", 2000)
			began := time.Now()
			for i, a := range l.backendAddrs() {
				l.setState(t, a, "drain")
				testutil.Eventually(t, 10*time.Second, "backend "+a+" without connections after the drain", func() bool {
					return l.lb.backend(t, l.admin, a).Active == 0
				})
				l.servers[i].signal(syscall.SIGTERM)
				l.servers[i].wait(t, 10*time.Second)
				l.startBackend(t, i)
				l.setState(t, a, "ready")
				l.lb.waitState(t, l.admin, a, "ready", 5*time.Second)
			}
			took := time.Since(began)
			for _, a := range l.backendAddrs() { // the restarted backends at work
				served := l.lb.backend(t, l.admin, a).Requests
				testutil.Eventually(t, 10*time.Second, "backend "+a+" serving after its restart", func() bool {
					return l.lb.backend(t, l.admin, a).Requests > served
				})
			}
			run.p.signal(syscall.SIGINT) // bench reports what it measured
			s := run.result(t)
			row(t, "rolling restart of 4 backends in %s during the run: %s", took.Round(time.Millisecond), summaryLine(s))
			if s.Complete < 2000 || s.Failed != 0 || s.Non2xx != 0 {
				t.Errorf("rolling restart: %s; want none failed", summaryLine(s))
			}
		})
	}
}

// setState puts a backend in drain or ready through the admin API.
func (l *lab) setState(t *testing.T, addr, state string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+l.admin+"/api/backends/"+addr, strings.NewReader(`{"state":"`+state+`"}`))
	resp, err := l.lb.client().Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", state, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT %s %s: %s", addr, state, resp.Status)
	}
}
