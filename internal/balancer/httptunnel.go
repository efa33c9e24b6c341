package balancer

import (
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/httpx"
)

// http mode's tunnels: a request that asks to upgrade its connection (a
// WebSocket handshake) goes to its backend with its Upgrade, and when the
// backend answers 101 the client and that backend connection carry bytes
// both ways, unparsed, as HAProxy tunnels them: a client's FIN is passed
// on as a half-close, and the tunnel ends when the backend closes, when
// the client goes, or when neither sends for --client-idle. The request counts as active
// on its backend all that time, and is logged with 101 when it ends.

// startTunnel passes the backend's 101 to the client, with what came
// after it, and turns the exchange into a tunnel: what the client sent
// after its request goes to the backend.
func (bc *backendConn) startTunnel(rh *httpx.ResponseHead, rest []byte) {
	c := bc.client
	ex := &c.ex
	bc.answered(rh)
	ex.closeAfter, bc.reusable = true, false
	c.state = tunneling
	head := append(httpx.AppendProxyUpgradeHead(c.scratch(), rh, "loadlab"), rest...)
	c.outBuf = head
	ex.sent += int64(len(head))
	if !c.send(head) {
		return
	}
	if len(c.in) > 0 {
		bc.out = append(bc.out[:0], c.in...)
		c.in = c.in[:0]
		if !bc.write() {
			return
		}
	}
	bc.watch()
	c.watch()
	if c.eof { // the client's FIN came before the 101
		c.clientEnded()
	}
}

// toBackend passes what the client sent on to the tunnel's backend; the
// client is not read again until the backend has taken it.
func (c *httpClient) toBackend(p []byte) {
	bc := c.ex.bc
	bc.out = append(bc.out, p...)
	if bc.write() {
		c.watch()
	}
}

// clientEnded passes the client's FIN on to the backend, once what the
// client sent before it is written (bc.write does it then), and the
// tunnel goes on the other way until the backend closes, as HAProxy
// passes a half-close on.
func (c *httpClient) clientEnded() {
	c.eof = true
	if bc := c.ex.bc; len(bc.out) == 0 {
		unix.Shutdown(bc.fd, unix.SHUT_WR)
	}
	c.watch()
}

// toClient passes what the backend sent on to the tunnel's client; the
// backend is not read again until the client has taken it.
func (bc *backendConn) toClient(p []byte) {
	c := bc.client
	c.ex.sent += int64(len(p))
	if c.send(p) {
		bc.watch()
	}
}

// finishTunnel closes the tunnel's backend connection, counts the
// exchange done and logs it.
func (c *httpClient) finishTunnel() {
	ex := &c.ex
	bc := ex.bc
	be := bc.be
	c.h.b.release(c.h.l, be)
	be.BytesOut.Add(ex.sent)
	ex.bc, ex.done = nil, true
	bc.close()
	c.h.logRequest(c, be, ex.status, ex.sent)
}

// backendEnded ends a tunnel whose backend closed: the client gets what
// it is still owed, then the close.
func (c *httpClient) backendEnded() {
	c.finishTunnel()
	c.eof = true // nothing more is read from it
	c.linger()
}

// lastByte is when a byte last went either way through the tunnel.
func (c *httpClient) lastByte() time.Time {
	if bc := c.ex.bc; bc != nil && bc.active.After(c.active) {
		return bc.active
	}
	return c.active
}
