// Package served starts loadlab's own HTTP server, the lab's site, for a
// test: on 127.0.0.1:0 unless the config says otherwise, stopped when the
// test ends. It is apart from testutil because the server's own tests use
// testutil, and the server cannot import what imports it.
package served

import (
	"context"
	"testing"
	"time"

	"loadlab/internal/server"
	"loadlab/internal/site"
)

// Start serves the lab's site with cfg (Model "thread" when empty) and
// returns the running server; it fails the test if it cannot start.
func Start(t testing.TB, cfg server.Config) server.Server {
	t.Helper()
	h, err := site.New("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model == "" {
		cfg.Model = "thread"
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	srv, err := server.Start(cfg, h)
	if err != nil {
		t.Fatalf("serve %s: %v", cfg.Model, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}

// URL is the server's base URL.
func URL(srv server.Server) string { return "http://" + srv.Addr().String() }
