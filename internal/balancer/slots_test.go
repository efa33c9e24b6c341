package balancer

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"loadlab/internal/bench"
	"loadlab/internal/testutil"
)

// Four backends of two slots each under a hundred clients: every request
// is served, none waits past its time, no backend ever serves more than
// its maxconn, and every slot comes back at the end.
func TestMaxConnUnderLoad(t *testing.T) {
	for _, mode := range []string{"tcp", "http"} {
		for _, keepAlive := range []bool{false, true} {
			_, cfgs := fourBackends(t)
			for i := range cfgs {
				cfgs[i].MaxConn = 2
			}
			b := startBalancer(t, Config{Mode: mode, Backends: cfgs, QueueTimeout: 10 * time.Second, Check: CheckConfig{Kind: "none"}})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			s, err := bench.Run(ctx, bench.Work{URL: "http://" + b.Addr().String() + "/", Requests: 3000, Concurrency: 100,
				KeepAlive: keepAlive, Timeout: 20 * time.Second}, nil)
			cancel()
			what := fmt.Sprintf("%s, keep-alive %v", mode, keepAlive)
			if err != nil || s.Complete != 3000 || s.Failed != 0 || s.Non2xx != 0 {
				t.Errorf("%s: %v; complete %d, failed %d, non-2xx %d", what, err, s.Complete, s.Failed, s.Non2xx)
			}
			for _, st := range b.Status() {
				if st.MaxActive > 2 {
					t.Errorf("%s: backend %s served %d at once, over its maxconn of 2", what, st.Name, st.MaxActive)
				}
				if st.Requests == 0 {
					t.Errorf("%s: backend %s served nothing", what, st.Name)
				}
			}
			slotsComeBack(t, b, what)
		}
	}
}

// slotsComeBack waits for every slot to be given back and
// the queue to be empty once the clients are done.
func slotsComeBack(t *testing.T, b *Balancer, what string) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, what+": every slot back, nothing queued", func() bool {
		for _, be := range b.pool.All() {
			if be.Active.Load() != 0 {
				return false
			}
		}
		now, _ := b.Waiting()
		return now == 0
	})
}

// gatedBackend answers each HTTP request with its path only when the test
// lets one through, and keeps the most requests it held at once.
type gatedBackend struct {
	addr, name string
	gate       chan struct{}
	mu         sync.Mutex
	held, most int
	seen       []string // paths, in the order they came
}

func startGated(t *testing.T, name string) *gatedBackend {
	g := &gatedBackend{name: name, gate: make(chan struct{})}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	g.addr = serveEach(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			g.mu.Lock()
			g.held++
			g.most = max(g.most, g.held)
			g.seen = append(g.seen, req.URL.Path)
			g.mu.Unlock()
			select {
			case <-g.gate:
			case <-done:
				return
			}
			g.mu.Lock()
			g.held--
			g.mu.Unlock()
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Served-By: %s\r\n\r\n%s", len(req.URL.Path), g.name, req.URL.Path)
		}
	})
	return g
}

// pass lets one held request be answered.
func (g *gatedBackend) pass(t *testing.T) {
	t.Helper()
	select {
	case g.gate <- struct{}{}:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s holds no request to let through", g.name)
	}
}

func (g *gatedBackend) stats() (most int, seen []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.most, slices.Clone(g.seen)
}

// answer is what fetch got.
type answer struct {
	status         int
	servedBy, body string
	err            error
}

// fetchLater runs fetch on its own goroutine.
func fetchLater(addr, path string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		var a answer
		a.status, a.servedBy, a.body, a.err = fetch(addr, path)
		ch <- a
	}()
	return ch
}

// slotHeld starts a balancer in mode over one gated backend of maxconn 1,
// and a request, "/first", that takes the slot and is held there.
func slotHeld(t *testing.T, mode string, queueTimeout time.Duration) (*gatedBackend, *Balancer, <-chan answer) {
	t.Helper()
	g := startGated(t, "g1")
	b := startBalancer(t, Config{Mode: mode, Backends: []BackendConfig{{Addr: g.addr, MaxConn: 1}}, QueueTimeout: queueTimeout,
		Check: CheckConfig{Kind: "none"}})
	be := b.pool.All()[0]
	first := fetchLater(b.Addr().String(), "/first")
	testutil.Eventually(t, 5*time.Second, mode+": the first request at the backend", func() bool { return be.Active.Load() == 1 })
	return g, b, first
}

func waitingNow(b *Balancer) int64 {
	now, _ := b.Waiting()
	return now
}

// A backend at its maxconn keeps the next client waiting, not refused and
// not sent to it, until its slot frees; then the client is served, in
// both modes, and the backend never holds more than its maxconn.
func TestMaxConnQueuesUntilASlotFrees(t *testing.T) {
	for _, mode := range []string{"tcp", "http"} {
		g, b, first := slotHeld(t, mode, 30*time.Second)
		second := fetchLater(b.Addr().String(), "/second")
		testutil.Eventually(t, 5*time.Second, mode+": the second request queued", func() bool { return waitingNow(b) == 1 })
		g.pass(t)
		if a := <-first; a.err != nil || a.status != 200 || a.body != "/first" {
			t.Errorf("%s: first: %+v", mode, a)
		}
		g.pass(t)
		if a := <-second; a.err != nil || a.status != 200 || a.body != "/second" {
			t.Errorf("%s: second, after its wait: %+v", mode, a)
		}
		if most, seen := g.stats(); most != 1 || !slices.Equal(seen, []string{"/first", "/second"}) {
			t.Errorf("%s: the backend held %d at once and saw %q; want 1, and both in order", mode, most, seen)
		}
		if _, most := b.Waiting(); most != 1 {
			t.Errorf("%s: the queue held %d at most, want 1", mode, most)
		}
		slotsComeBack(t, b, mode)
	}
}

// A client that waits queue_timeout for a slot is turned away: 503 in
// http mode, a reset in tcp mode, as HAProxy's timeout queue; its request
// never reaches the backend, and the one being served is not disturbed.
func TestMaxConnQueueTimesOut(t *testing.T) {
	for _, mode := range []string{"tcp", "http"} {
		g, b, first := slotHeld(t, mode, 200*time.Millisecond)
		began := time.Now()
		status, _, body, err := fetch(b.Addr().String(), "/second")
		waited := time.Since(began)
		switch {
		case waited < 200*time.Millisecond:
			t.Errorf("%s: turned away after %s, before queue_timeout", mode, waited)
		case mode == "http" && (err != nil || status != 503 || !strings.Contains(body, "maxconn")):
			t.Errorf("http: a request past queue_timeout got %d %q %v, want 503 naming maxconn", status, body, err)
		case mode == "tcp" && err == nil:
			t.Errorf("tcp: a connection past queue_timeout got %d %q, want a reset", status, body)
		}
		g.pass(t)
		if a := <-first; a.err != nil || a.status != 200 || a.body != "/first" {
			t.Errorf("%s: first: %+v", mode, a)
		}
		if _, seen := g.stats(); !slices.Equal(seen, []string{"/first"}) {
			t.Errorf("%s: the backend saw %q, want the first request alone", mode, seen)
		}
		slotsComeBack(t, b, mode)
	}
}

// While one backend is at its maxconn, the algorithm sends new traffic to
// the others, none waits.
func TestMaxConnSendsTrafficElsewhere(t *testing.T) {
	for _, mode := range []string{"tcp", "http"} {
		g := startGated(t, "g1")
		other := startServe(t, "b2")
		b := startBalancer(t, Config{Mode: mode, Backends: []BackendConfig{{Addr: g.addr, MaxConn: 1}, {Addr: other.addr}},
			QueueTimeout: 30 * time.Second, Check: CheckConfig{Kind: "none"}})
		first := fetchLater(b.Addr().String(), "/first") // round robin begins with g1
		testutil.Eventually(t, 5*time.Second, mode+": the first request at g1", func() bool { return b.pool.All()[0].Active.Load() == 1 })
		for i := range 6 {
			if status, by, _, err := fetch(b.Addr().String(), "/"); err != nil || status != 200 || by != "b2" {
				t.Errorf("%s: request %d with g1 full: %d from %q, %v; want 200 from b2", mode, i, status, by, err)
			}
		}
		g.pass(t)
		if a := <-first; a.err != nil || a.body != "/first" {
			t.Errorf("%s: first: %+v", mode, a)
		}
		if _, most := b.Waiting(); most != 0 {
			t.Errorf("%s: %d waited, with b2 free", mode, most)
		}
		slotsComeBack(t, b, mode)
	}
}

// A hash keeps its key to its backend even when that one is full: the
// request waits for it, as HAProxy queues on the server a hash chose,
// rather than going to another backend.
func TestMaxConnHashWaitsForItsBackend(t *testing.T) {
	g := startGated(t, "g1")
	other := startServe(t, "b2")
	b := startBalancer(t, Config{Mode: "http", Algo: "sourcehash", HashBy: "uri",
		Backends:     []BackendConfig{{Addr: g.addr, MaxConn: 1}, {Addr: other.addr}},
		QueueTimeout: 30 * time.Second, Check: CheckConfig{Kind: "none"}})
	gbe := b.pool.All()[0]
	var paths []string // two paths the hash gives to g1
	for i := 0; len(paths) < 2; i++ {
		p := fmt.Sprintf("/k%d", i)
		if (SourceHash{}).pickKey(b.pool.All(), []byte(p)) == gbe {
			paths = append(paths, p)
		}
	}
	first := fetchLater(b.Addr().String(), paths[0])
	testutil.Eventually(t, 5*time.Second, "the first request at g1", func() bool { return gbe.Active.Load() == 1 })
	second := fetchLater(b.Addr().String(), paths[1])
	testutil.Eventually(t, 5*time.Second, "the second request queued for g1", func() bool { return waitingNow(b) == 1 })
	g.pass(t)
	g.pass(t)
	for i, ch := range []<-chan answer{first, second} {
		if a := <-ch; a.err != nil || a.status != 200 || a.servedBy != "g1" || a.body != paths[i] {
			t.Errorf("%s: %+v, want it from g1", paths[i], a)
		}
	}
	slotsComeBack(t, b, "sourcehash")
}

// The stats say what maxconn does: the limit per backend (JSON, CSV's
// slim, metrics, page) and the queue (CSV's BACKEND qcur and qmax,
// metrics, page); the admin API sets maxconn, and a raised one lets the
// waiting in at once.
func TestMaxConnInTheStatsAndTheAPI(t *testing.T) {
	g, b, first := slotHeld(t, "http", 30*time.Second)
	a := startAdmin(t, b, "")
	be := b.pool.All()[0]
	second := fetchLater(b.Addr().String(), "/second")
	testutil.Eventually(t, 5*time.Second, "the second request queued", func() bool { return waitingNow(b) == 1 })

	rows, col := statsCSV(t, a, 4) // header, FRONTEND, g1, BACKEND
	if got := rows[2][col["slim"]]; got != "1" {
		t.Errorf("CSV slim of g1: %q, want 1", got)
	}
	if q, qmax := rows[3][col["qcur"]], rows[3][col["qmax"]]; q != "1" || qmax != "1" {
		t.Errorf("CSV BACKEND qcur, qmax: %q %q, want 1 1", q, qmax)
	}
	_, metrics := adminDo(t, a, "GET", "/metrics", "")
	for _, want := range []string{"loadlab_backend_queue 1\n", `loadlab_backend_maxconn{backend="` + g.addr + `"} 1` + "\n"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if _, page := adminDo(t, a, "GET", "/", ""); !strings.Contains(page, `<b id="backend-queue">1</b>`) {
		t.Error("the stats page does not show the request waiting")
	}
	var list []BackendStatus
	if _, body := adminDo(t, a, "GET", "/api/backends", ""); json.Unmarshal([]byte(body), &list) != nil || len(list) != 1 || list[0].MaxConn != 1 {
		t.Errorf("JSON: %s", body)
	}

	for _, bad := range []string{`{"maxconn":-1}`, `{"maxconn":2000000}`} {
		if code, _ := adminDo(t, a, "PUT", "/api/backends/"+g.addr, bad); code != 400 {
			t.Errorf("PUT %s: %d, want 400", bad, code)
		}
	}
	if code, _ := adminDo(t, a, "PUT", "/api/backends/"+g.addr, `{"maxconn":2}`); code != 200 {
		t.Fatalf("PUT maxconn 2: %d", code)
	}
	testutil.Eventually(t, 5*time.Second, "the waiting request in, with a second slot", func() bool {
		return be.Active.Load() == 2 && waitingNow(b) == 0
	})
	g.pass(t)
	g.pass(t)
	for _, ch := range []<-chan answer{first, second} {
		if r := <-ch; r.err != nil || r.status != 200 {
			t.Errorf("%+v", r)
		}
	}
	if code, body := adminDo(t, a, "POST", "/api/backends", `{"addr":"127.0.0.1:1","maxconn":7}`); code != 201 || !strings.Contains(body, `"maxconn":7`) {
		t.Errorf("POST with maxconn: %d %s", code, body)
	}
	slotsComeBack(t, b, "http")
}
