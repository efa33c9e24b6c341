package evloop

import (
	"net"
	"time"
)

// Client loops: the same loops without a listener, for a load generator
// (bench). Its handler opens its own connections when its loop starts,
// keeps time of its own between the sweeps (a request due at a given
// moment, in rate mode), and says when it has nothing left to do.

// ClientHandler is what one client loop does.
type ClientHandler interface {
	Start() // on the loop's goroutine, before its first wait
	// Next is the next moment the handler must run, or zero for none:
	// the loop's wait ends by then. Tick follows every wait.
	Next() time.Time
	Tick(now time.Time)
	Sweep() // every Config.SweepEvery: timeouts
}

// starter and timer are what run looks for in a handler.
type (
	starter interface{ Start() }
	timer   interface {
		Next() time.Time
		Tick(now time.Time)
	}
)

// RunClients runs cfg.Loops loops without a listener, each with a handler
// made by newHandler, and returns once every one has called Loop.Done.
func RunClients(cfg Config, newHandler func(*Loop) ClientHandler) error {
	g, err := Start(-1, cfg, func(l *Loop) Handler { return client{newHandler(l), l} })
	if err != nil {
		return err
	}
	g.wg.Wait()
	return nil
}

// client makes a ClientHandler a Handler: nothing is accepted, refused
// or stopped from outside.
type client struct {
	ClientHandler
	l *Loop
}

func (client) Take(int, net.Addr)   {}
func (client) Refuse(int, net.Addr) {}
func (client) Stopping()            {}
func (client) CloseAll()            {}

// Sweep sweeps every Config.SweepEvery while the handler runs: it keeps
// no deadlines the loop could wait for.
func (c client) Sweep() time.Time {
	c.ClientHandler.Sweep()
	return c.l.Now()
}

// Done ends the loop after this round: its handler holds nothing more.
func (l *Loop) Done() { l.done = true }
