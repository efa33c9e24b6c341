package balancer

import "net"

// attempts is the way a connection (tcp mode) or a request (http mode)
// takes through the backends: the ones tried, and why each one failed.
// Both modes choose the next backend with it, so a redispatch means the
// same in each, as HAProxy's `option redispatch` does: another backend,
// never one already tried, up to --retries more after the first. What
// may be retried differs by mode: tcp retries only a failed connect, http
// also an idempotent request that got no response byte.
type attempts struct {
	tried   []*Backend
	skipped []string // "backend: why", for the log and the 502's body
}

// reset readies a for a new connection or request, keeping its memory.
func (a *attempts) reset() { a.tried, a.skipped = a.tried[:0], a.skipped[:0] }

// next picks the backend to try next for the client at from, and takes a
// slot on it: nil when the retries are used up or no backend is left, or,
// with full, when those left are at their maxconn: the client waits for
// a slot (slots.go).
func (a *attempts) next(b *Balancer, from net.Addr) (be *Backend, full bool) {
	if len(a.tried) > max(b.Config().Retries, 0) {
		return nil, false
	}
	be, full = b.pick(from, a.tried)
	if be != nil {
		a.tried = append(a.tried, be)
	}
	return be, full
}

// failed records why be failed.
func (a *attempts) failed(be *Backend, err error) {
	a.skipped = append(a.skipped, be.Name+": "+shortErr(err))
}

// connectFailed records a failed connect to be. A failure of the
// balancer's own (no descriptors, no source ports) is not held against
// be; any other makes it suspect for a while, so that the next pick goes
// elsewhere even before a health check sees it down.
func (a *attempts) connectFailed(be *Backend, err error) {
	a.failed(be, err)
	if !localFailure(err) {
		be.suspect(suspectFor)
	}
}

// none reports whether no backend was available at all (503), as opposed
// to every one tried having failed (502).
func (a *attempts) none() bool { return len(a.tried) == 0 }
