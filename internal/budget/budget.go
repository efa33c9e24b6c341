// Package budget bounds memory that many connections share: what each
// holds beyond a free allowance it takes from one pool, and gives back,
// so that a crowd of clients each sending a large request slowly is
// refused before it runs the process out of memory. nginx spools such
// bodies to disk and HAProxy streams them through 16 KiB buffers; a
// server that holds a request whole bounds the sum instead.
package budget

import "sync/atomic"

// Free is what a connection may hold of requests not yet whole without
// drawing on a budget for them: heads, small bodies, a pipelined batch.
const Free = 64 << 10

// MinRequests is the smallest budget for requests held whole; a variable
// so that tests can lower it.
var MinRequests int64 = 64 << 20

// ForRequests is a pool for the requests a server holds whole while they
// come, past Free each, when the largest it takes is largest bytes:
// MinRequests, or four of the largest.
func ForRequests(largest int64) *Pool { return New(RequestsSize(largest), Free) }

// RequestsSize is ForRequests' size, for a Resize.
func RequestsSize(largest int64) int64 { return max(MinRequests, 4*largest) }

// Pool is the memory to share.
type Pool struct {
	free int64 // held free by every holder: not taken from the pool
	size atomic.Int64
	left atomic.Int64
}

// New makes a pool of size bytes, of which each holder keeps its first
// free bytes without taking from it.
func New(size, free int64) *Pool {
	p := &Pool{free: free}
	p.Resize(size)
	return p
}

// Resize makes the pool size bytes; what holders took stays taken (a
// configuration reloaded with larger requests allowed).
func (p *Pool) Resize(size int64) { p.left.Add(size - p.size.Swap(size)) }

// Hold sets what a holder holds to size bytes, *held being what it took
// from the pool so far: it takes the difference, or gives it back. It
// reports false, changing nothing, when the pool has not enough left.
func (p *Pool) Hold(held *int64, size int) bool {
	want := max(int64(size)-p.free, 0)
	delta := want - *held
	if delta > 0 && p.left.Add(-delta) < 0 {
		p.left.Add(delta)
		return false
	}
	if delta < 0 {
		p.left.Add(-delta)
	}
	*held = want
	return true
}

// Release gives back all a holder took: its connection is gone.
func (p *Pool) Release(held *int64) { p.Hold(held, 0) }

// Left is what the pool has left.
func (p *Pool) Left() int64 { return p.left.Load() }
