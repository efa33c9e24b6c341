package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/evloop"
	"loadlab/internal/rawsys"
)

// Aborted is returned, with the Summary so far, when a run ends early the
// way ab ends it: a receive error without -r, or connections that keep
// failing. Msg is ab's line for it.
type Aborted struct {
	Msg string
	// Code is the exit status ab gives it: APR's error number (an errno,
	// or 70007 for a timeout; the shell sees it modulo 256).
	Code int
}

func (e *Aborted) Error() string { return e.Msg }

// Progress is told the number of completed requests every Heartbeat
// completions; ab prints "Completed N requests" there.
type Progress func(done int64)

// Heartbeat is how often ab reports progress for n requests: every tenth,
// but not more often than every 100.
func Heartbeat(n int) int64 { return int64(max(n/10, 100)) }

// run is the shared state of one run; the workers read it and touch only
// atomics.
type run struct {
	w        *Work
	t        *target
	req      []byte
	addr     *net.TCPAddr
	noBody   bool
	n        int64
	start    time.Time
	deadline time.Time

	issued    atomic.Int64 // tickets taken: one per attempt, failed or not, so that complete and failed add up to n at most
	scheduled atomic.Int64 // rate mode: sends scheduled so far
	done      atomic.Int64 // requests completed
	failed    atomic.Int64 // attempts that failed
	docLen    atomic.Int64 // the first response's body length; -1 before it
	stop      atomic.Bool
	abortOnce sync.Once
	traceMu   sync.Mutex // Work.Trace's writes
	abortMsg  string
	abortCode int
	server    atomic.Pointer[string]
	tls       atomic.Pointer[TLSInfo] // the first handshake's, for the report

	coll      *collector
	progress  Progress
	heartbeat int64
}

// workerStats are one worker's counters, summed when the run ends.
type workerStats struct {
	complete, connectErr, recvErr, lengthErr, exceptions, writeErr int64
	refused                                                        int64 // of recvErr
	non2xx, keepAlive, totalRead, htmlRead, bodySent               int64
	last                                                           time.Time
}

// Run performs w and returns its summary. progress may be nil. A run cut
// short by ctx returns what was measured so far, as ab does on Ctrl-C.
func Run(ctx context.Context, w Work, progress Progress) (*Summary, error) {
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
	addr, err := net.ResolveTCPAddr("tcp", t.addr)
	if err != nil {
		return nil, fmt.Errorf("cannot resolve %s: %v (check the host name in the URL)", t.host, unwrapDNS(err))
	}
	if w.Warmup > 0 {
		warm := w
		warm.Requests, warm.Warmup, warm.TimeLimit, warm.KeepSamples = w.Warmup, 0, 0, false
		warm.Concurrency = min(w.Concurrency, w.Warmup)
		if _, err := execute(ctx, &warm, t, addr, nil); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	return execute(ctx, &w, t, addr, progress)
}

func execute(ctx context.Context, w *Work, t *target, addr *net.TCPAddr, progress Progress) (*Summary, error) {
	r := &run{
		w: w, t: t, req: w.buildRequest(t), addr: addr, noBody: w.Method == "HEAD",
		n: int64(w.Requests), coll: newCollector(w.KeepSamples), progress: progress, heartbeat: Heartbeat(w.Requests),
	}
	r.docLen.Store(-1)
	r.start = time.Now()
	if w.Interval > 0 {
		r.coll.timeline = &timeline{origin: r.start, every: w.Interval}
	}
	if w.TimeLimit > 0 {
		r.deadline = r.start.Add(w.TimeLimit)
	}
	stopOnCancel := context.AfterFunc(ctx, func() { r.stop.Store(true) })
	defer stopOnCancel()

	if t.tls {
		cfg, err := w.TLS.config(t.host)
		if err != nil {
			return nil, err
		}
		s := r.summarize(runTLS(r, cfg))
		if r.abortMsg != "" {
			return s, &Aborted{Msg: r.abortMsg, Code: r.abortCode}
		}
		return s, nil
	}
	// One client loop per core, the connections shared out between them.
	n := min(runtime.GOMAXPROCS(0), w.Concurrency)
	var loops []*loop
	err := evloop.RunClients(evloop.Config{Loops: n, SweepEvery: sweepEvery}, func(ev *evloop.Loop) evloop.ClientHandler {
		share := w.Concurrency / n
		if len(loops) < w.Concurrency%n {
			share++
		}
		l := newLoop(r, ev, share)
		loops = append(loops, l)
		return l
	})
	if err != nil {
		return nil, err
	}
	stats := make([]workerStats, len(loops))
	for i, l := range loops {
		stats[i] = l.stats
	}
	s := r.summarize(stats)
	if r.abortMsg != "" {
		return s, &Aborted{Msg: r.abortMsg, Code: r.abortCode}
	}
	return s, nil
}

func (r *run) abort(msg string, code int) {
	r.abortOnce.Do(func() {
		r.abortMsg, r.abortCode = msg, code
		r.stop.Store(true)
	})
}

// abCode is the status ab exits with for err: APR's number for it, the
// system's errno for a system error.
func abCode(err error) int {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return int(errno)
	}
	return 1
}

// take claims the right to one more request; false ends the worker.
func (r *run) take() bool {
	if r.stop.Load() {
		return false
	}
	if r.issued.Add(1) > r.n {
		return false
	}
	if !r.deadline.IsZero() && time.Now().After(r.deadline) {
		r.stop.Store(true)
		return false
	}
	return true
}

// outcome classifies an attempt into ab's categories.
type outcome int

const (
	completed outcome = iota
	connectFailed
	receiveFailed
	exception
	writeFailed
)

// complete counts a response that ended at end.
func (r *run) complete(ws *workerStats, rec *recorder, s sample, res *response, end time.Time) {
	ws.complete++
	ws.last = end
	ws.totalRead += res.head + res.body
	ws.htmlRead += res.body
	if len(r.w.Body) > 0 {
		ws.bodySent += int64(len(r.req)) // ab's "Total body sent" counts the whole request, head and body
	}
	if res.status < 200 || res.status > 299 {
		ws.non2xx++
		s.non2xx = true
		if r.w.Verbosity >= 2 {
			r.tracef("WARNING: Response code not 2xx (%d)\n", res.status)
		}
	} else if r.w.Verbosity >= 3 {
		r.tracef("LOG: Response code = %d\n", res.status)
	}
	if r.w.KeepAlive && res.keepAlive {
		ws.keepAlive++
	}
	if res.server != "" {
		server := res.server // res is reused for the next response
		r.server.CompareAndSwap(nil, &server)
	}
	if res.short {
		ws.lengthErr++
	} else if !r.docLen.CompareAndSwap(-1, res.body) && !r.w.VariableLength && res.body != r.docLen.Load() {
		ws.lengthErr++
	}
	rec.record(s)
	if d := r.done.Add(1); r.progress != nil && d%r.heartbeat == 0 {
		r.progress(d)
	}
}

// fail counts a failed attempt and ends the run where ab would: at a
// receive error without -r, or after more than ten failed connections
// (ab's "Test aborted after 10 failures").
func (r *run) fail(ws *workerStats, out outcome, err error) {
	failed := r.failed.Add(1)
	r.coll.failedAt(time.Now())
	if out == connectFailed && errors.Is(err, syscall.ECONNREFUSED) {
		// ab's connect does not wait: a refusal comes to it as the first
		// read's error, a receive error, which ends the run without -r.
		out = receiveFailed
		ws.refused++
	}
	switch out {
	case connectFailed:
		ws.connectErr++
		if failed > 10 && !r.w.ContinueOnError {
			r.abort("Test aborted after 10 failures\n\napr_socket_connect(): "+abErr(err), abCode(err))
		}
	case receiveFailed:
		ws.recvErr++
		if !r.w.ContinueOnError {
			if isTimeout(err) {
				r.abort("apr_pollset_poll: The timeout specified has expired (70007)", 70007)
			} else {
				r.abort("apr_socket_recv: "+abErr(err), abCode(err))
			}
		}
	case writeFailed:
		ws.writeErr++
		ws.exceptions++
	case exception:
		ws.exceptions++
	}
}

// abErr renders an error as ab does: the system's message and its number.
func abErr(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return fmt.Sprintf("%s (%d)", errnoText(errno), int(errno))
	}
	if isTimeout(err) {
		return "The timeout specified has expired (70007)"
	}
	return errnoText(err)
}

func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		return string(s[0]-'a'+'A') + s[1:]
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	if err == nil || errors.Is(err, io.EOF) {
		return "Connection closed before a complete response"
	}
	return err.Error()
}

func unwrapDNS(err error) error {
	var de *net.DNSError
	if errors.As(err, &de) {
		return errors.New(de.Err)
	}
	return err
}

// traceHead prints, for -v 2 and up, a response's first bytes as they
// came, as ab prints its header buffer.
func (r *run) traceHead(first []byte) {
	if r.w.Verbosity >= 2 {
		r.tracef("LOG: header received:\n%s\n", first)
	}
}

// tracef writes to Work.Trace, from any loop.
func (r *run) tracef(format string, args ...any) {
	if r.w.Trace == nil {
		return
	}
	r.traceMu.Lock()
	defer r.traceMu.Unlock()
	fmt.Fprintf(r.w.Trace, format, args...)
}

// prepare readies a new socket as ab's -b and -B ask: its buffers' size,
// the local address it connects from.
func (r *run) prepare(fd int) error {
	if n := r.w.WindowSize; n > 0 {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, n)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n)
	}
	if r.w.LocalAddr != "" {
		if err := rawsys.Bind(fd, rawsys.NewSockaddr(net.ParseIP(r.w.LocalAddr), 0)); err != nil {
			return os.NewSyscallError("bind", err)
		}
	}
	return nil
}
