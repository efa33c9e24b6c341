package balancer

import (
	"context"
	"encoding/base64"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"loadlab/internal/server"
	"loadlab/internal/testutil"
	"loadlab/internal/testutil/served"
)

// The stats page as an operator uses it, in Chromium: behind basic auth,
// a killed backend turns down on the page (refreshed in place) and comes
// back up when restarted, a backend is drained with its button, and the
// CSV downloads. With LOADLAB_DOCS set to a directory, the page's
// screenshot is saved there as balance-stats.png (the README's).
func TestStatsPageInABrowser(t *testing.T) {
	ctx := testutil.Browser(t)
	one := served.Start(t, server.Config{Name: "one", Model: "async"})
	two := startServe(t, "two")
	oneAddr := one.Addr().String()
	b := startBalancer(t, Config{Mode: "http", Backends: []BackendConfig{{Addr: oneAddr}, {Addr: two.addr, Weight: 2}},
		Check: CheckConfig{Kind: "http", Path: "/santai", Interval: 100 * time.Millisecond, Rise: 1, Fall: 1}})
	a, err := StartAdmin(b, AdminConfig{Listen: "127.0.0.1:0", Token: "s3cret", User: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for range 30 {
		fetch(b.Addr().String(), "/")
	}
	downloads := t.TempDir()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:s3cret"))
	setup := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}}); err != nil {
			return err
		}
		events := true
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: &events})
		return err
	})
	progress := chromedp.Events(ctx, browser.DownloadProgress)
	page := "http://" + a.Addr().String() + "/"
	if err := chromedp.Do(ctx, setup, chromedp.Navigate(page), chromedp.WaitReady(`#backends tr[data-backend]`)); err != nil {
		t.Fatal(err)
	}
	stateOnPage := func(name, want string) {
		t.Helper()
		js := `(document.querySelector('#backends tr[data-backend="` + name + `"]') || {}).className === "` + want + `"`
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js)); err != nil {
			t.Fatalf("%s never shown %s on the page: %v", name, want, err)
		}
	}
	stateOnPage(oneAddr, "ready")

	// Killed: down on the page, without reloading it; restarted: up again.
	ctxStop, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	one.Shutdown(ctxStop)
	cancel()
	stateOnPage(oneAddr, "down")
	served.Start(t, server.Config{Name: "one", Model: "async", Listen: oneAddr})
	stateOnPage(oneAddr, "ready")

	// Drained with its button.
	if err := chromedp.Do(ctx, chromedp.Click(`#backends tr[data-backend="`+two.addr+`"] button[data-state="drain"]`)); err != nil {
		t.Fatal(err)
	}
	stateOnPage(two.addr, "drain")
	if s := b.Pool().Find(two.addr).State(); s != Drain {
		t.Errorf("after the button the pool says %s", s)
	}

	if dir := os.Getenv("LOADLAB_DOCS"); dir != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "balance-stats.png"), png, 0o644)
		}
		if err != nil {
			t.Error(err)
		}
	}

	// The CSV, downloaded as a browser downloads it (the file is named by
	// the download's GUID).
	if err := chromedp.Do(ctx, chromedp.Click(`a[href="/;csv"]`)); err != nil {
		t.Fatal(err)
	}
	var file string
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("the CSV's download: %v", err)
		}
		if ev.State == browser.DownloadProgressStateCompleted {
			file = filepath.Join(downloads, ev.GUID)
			break
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatal("the CSV's download was cancelled")
		}
	}
	data, _ := os.ReadFile(file)
	rows, err := csv.NewReader(strings.NewReader(string(data))).ReadAll()
	if err != nil || len(rows) != 5 || rows[1][1] != "FRONTEND" || !strings.Contains(string(data), two.addr) {
		t.Errorf("downloaded CSV: %v %q", err, data)
	}
}
