package balancer

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// accessLog writes a line per connection (tcp) or request (http) off the
// forwarding path: records go down a channel to one writer goroutine, and
// when it falls behind they are counted as dropped rather than waited for.
type accessLog struct {
	log     *slog.Logger
	ch      chan []slog.Attr
	dropped atomic.Int64
	wg      sync.WaitGroup
}

func newAccessLog(l *slog.Logger) *accessLog {
	a := &accessLog{log: l}
	if l != nil {
		a.ch = make(chan []slog.Attr, 1<<14)
		a.wg.Go(func() {
			for attrs := range a.ch {
				msg := "connection"
				if attrs[0].Key == "event" {
					msg = attrs[0].Value.String()
					attrs = attrs[1:]
				}
				a.log.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
			}
		})
	}
	return a
}

func (a *accessLog) send(attrs []slog.Attr) {
	if a.ch == nil {
		return
	}
	select {
	case a.ch <- attrs:
	default:
		a.dropped.Add(1)
	}
}

func backendName(be *Backend) string {
	if be == nil {
		return "-"
	}
	return be.Name
}

// connection logs one tcp-mode connection.
func (a *accessLog) connection(client net.Addr, be *Backend, up, down int64, d time.Duration, status string, skipped []string) {
	if a.ch == nil {
		return
	}
	a.send([]slog.Attr{
		slog.String("client", client.String()), slog.String("backend", backendName(be)),
		slog.Int64("bytes_in", up), slog.Int64("bytes_out", down), slog.Duration("duration", d),
		slog.String("status", status), slog.String("skipped", strings.Join(skipped, "; ")),
	})
}

// request logs one http-mode request.
func (a *accessLog) request(client net.Addr, be *Backend, method, path string, status int, up, down int64, d time.Duration, skipped []string) {
	if a.ch == nil {
		return
	}
	a.send([]slog.Attr{
		slog.String("event", "request"),
		slog.String("client", client.String()), slog.String("backend", backendName(be)),
		slog.String("method", method), slog.String("path", path), slog.Int("status", status),
		slog.Int64("bytes_in", up), slog.Int64("bytes_out", down), slog.Duration("duration", d),
		slog.String("skipped", strings.Join(skipped, "; ")),
	})
}

// event logs a change of a backend's state.
func (a *accessLog) event(what string, be *Backend, detail string) {
	a.send([]slog.Attr{slog.String("event", what), slog.String("backend", be.Name), slog.String("detail", detail)})
}

func (a *accessLog) close() {
	if a.ch != nil {
		close(a.ch)
		a.wg.Wait()
	}
}
