package server

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"loadlab/internal/site"
)

// requests are whole pieces a connection script may send, besides its
// own raw bytes.
var requests = []string{
	"GET / HTTP/1.1\r\nHost: f\r\n\r\n",
	"GET /payload-100k.bin HTTP/1.1\r\nHost: f\r\n\r\n",
	"GET /payload-1m.bin HTTP/1.1\r\nHost: f\r\n\r\n",
	"HEAD /page.html HTTP/1.0\r\n\r\n",
	"POST /form HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: chunked\r\n\r\n5\r\na=b&c\r\n0\r\n\r\n",
	"POST /form HTTP/1.1\r\nHost: f\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
	"GARBAGE\x01 / HTTP/1.1\r\n\r\n",
	"GET /santai HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n",
}

// FuzzConnection drives whole connections against a running server: the
// input is a script of sends (raw bytes or whole requests), reads,
// half-closes and resets, in any order. Whatever it does, no panic may
// happen on the server, and afterwards it still answers. The seeds in
// testdata/fuzz/FuzzConnection replay in plain go test.
func FuzzConnection(f *testing.F) {
	f.Add([]byte{1, 0, 4})
	f.Add([]byte{1, 6, 4})
	f.Add([]byte{1, 1, 1, 1, 1, 2, 0, 5, 'G', 'E', 'T', ' ', '/', 4})
	f.Add([]byte{1, 2, 2, 200, 4, 1, 4, 3, 2, 10})
	f.Add([]byte{1, 5, 0, 3, '1', '2', '3', 3, 2, 50})
	h, err := site.New("")
	if err != nil {
		f.Fatal(err)
	}
	servers := map[string]Server{}
	for _, model := range []string{"async", "thread"} {
		srv, err := Start(Config{Model: model, Listen: "127.0.0.1:0", HeaderTimeout: time.Second, WriteTimeout: time.Second}, h)
		if err != nil {
			f.Fatal(err)
		}
		servers[model] = srv
		f.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		})
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 512 {
			return
		}
		for model, srv := range servers {
			runScript(t, srv.Addr().String(), script)
			if n := panicsOf(srv); n > 0 {
				t.Fatalf("%s: %d panics on script %v", model, n, script)
			}
			answers(t, model, srv.Addr().String())
		}
	})
}

// runScript plays a connection script: each step is an op byte and its
// arguments.
func runScript(t *testing.T, addr string, script []byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.(*net.TCPConn).SetLinger(0); c.Close() }()
	arg := func(i int) byte {
		if i < len(script) {
			return script[i]
		}
		return 0
	}
	for i := 0; i < len(script); {
		op := script[i] % 5
		i++
		switch op {
		case 0: // raw bytes from the script
			n := min(int(arg(i))%64+1, len(script)-i-1)
			if n > 0 {
				c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				c.Write(script[i+1 : i+1+n])
			}
			i += 1 + max(n, 0)
		case 1: // a whole request
			c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			c.Write([]byte(requests[int(arg(i))%len(requests)]))
			i++
		case 2: // read up to arg KiB
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			buf := make([]byte, (int(arg(i))+1)<<10)
			c.Read(buf)
			i++
		case 3: // half-close
			c.(*net.TCPConn).CloseWrite()
		case 4: // reset, and go on with a new connection
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			if c, err = net.Dial("tcp", addr); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// panicsOf is how many panics the server has recovered.
func panicsOf(srv Server) int64 {
	switch s := srv.(type) {
	case *asyncServer:
		return s.core.panics.Load()
	case *blockingServer:
		return s.core.panics.Load()
	}
	return 0
}

func answers(t *testing.T, model, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("%s: %v", model, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(requests[0]))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s: after the script: %v %v", model, resp, err)
	}
}
