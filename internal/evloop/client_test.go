package evloop

import (
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/rawsys"
)

// pinger is a client handler: on Start it connects to the echo server,
// sends one line and, once the echo is back, waits for its timer, then
// says it is done.
type pinger struct {
	l        *Loop
	sa       *rawsys.Sockaddr
	fd       int
	due      time.Time // the timer, once the echo came
	woke     time.Time
	echoed   *atomic.Int64
	finished *atomic.Int64
}

func (p *pinger) Start() {
	fd, err := p.l.Connect(p.sa)
	if err != nil {
		panic(err)
	}
	p.fd = fd
	if err := p.l.Add(fd, p, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP|unix.EPOLLET); err != nil {
		panic(err)
	}
}

func (p *pinger) Ready(events uint32) {
	if events&unix.EPOLLOUT != 0 && p.due.IsZero() {
		rawsys.Write(p.fd, []byte("ping\n"))
	}
	if n, _ := rawsys.Read(p.fd, p.l.Buf()); n == 5 {
		p.echoed.Add(1)
		p.due = time.Now().Add(30 * time.Millisecond)
		p.l.Disown(p.fd)
	}
}

func (p *pinger) Fail() {}

func (p *pinger) Next() time.Time { return p.due }

func (p *pinger) Tick(now time.Time) {
	if !p.due.IsZero() && !now.Before(p.due) && p.woke.IsZero() {
		p.woke = now
		p.finished.Add(1)
		p.l.Done()
	}
}

func (p *pinger) Sweep() {}

// TestClientLoops: loops without a listener start their handlers, report
// their sockets, wake them at the time they ask for, and end once each
// says it is done. The sweep comes once an hour: only the timer can end
// the wait in time.
func TestClientLoops(t *testing.T) {
	s := startEcho(t, 1)
	addr := s.addr
	var echoed, finished atomic.Int64
	var pingers []*pinger
	done := make(chan error, 1)
	go func() {
		done <- RunClients(Config{Loops: 2, SweepEvery: time.Hour}, func(l *Loop) ClientHandler {
			p := &pinger{l: l, sa: rawsys.NewSockaddr(addr.IP, addr.Port), echoed: &echoed, finished: &finished}
			pingers = append(pingers, p)
			return p
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client loops did not end")
	}
	if echoed.Load() != 2 || finished.Load() != 2 {
		t.Fatalf("%d echoes, %d finished; want 2 and 2", echoed.Load(), finished.Load())
	}
	for _, p := range pingers {
		if p.woke.Before(p.due) {
			t.Errorf("timer due %v woke %v, early", p.due, p.woke)
		}
	}
}
