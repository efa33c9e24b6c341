package lab

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"

	"loadlab/internal/testutil"
)

// startSystem runs one system of the default experiment on free ports.
func startSystem(t *testing.T, name string) []*running {
	t.Helper()
	cfg, _ := Load("")
	r := &runner{binary: binary, tmp: t.TempDir()}
	for _, s := range cfg.Systems {
		if s.Name != name {
			continue
		}
		ports, err := portsFor(context.Background(), s, true, map[int]string{}, t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		procs, err := r.start(s, ports)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopAll(procs) })
		return procs
	}
	t.Fatalf("no system %s", name)
	return nil
}

func served(t *testing.T, admin string) map[string]int64 {
	resp, err := http.Get("http://" + admin + "/api/backends")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []BackendStatusJSON
	json.NewDecoder(resp.Body).Decode(&list)
	out := map[string]int64{}
	for _, b := range list {
		if b.Requests > 0 {
			out[b.Name] = b.Requests
		}
	}
	return out
}

// BackendStatusJSON is the part of the admin API's answer the test reads.
type BackendStatusJSON struct {
	Name     string `json:"name"`
	Requests int64  `json:"requests"`
}

func TestBrowserThroughTheBalancer(t *testing.T) {
	testutil.NoteSources()
	ctx := testutil.Browser(t)
	for _, system := range []string{"async-balancer", "async-balancer-http"} {
		procs := startSystem(t, system)
		lb := procs[len(procs)-1]
		if err := chromedp.Do(ctx, chromedp.Navigate("http://"+lb.addr+"/page.html"), chromedp.WaitReady("#jaringan")); err != nil {
			t.Fatalf("%s: %v", system, err)
		}
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.images.length == 2 && [...document.images].every(i => i.complete)`)); err != nil {
			t.Fatalf("%s: images never completed: %v", system, err)
		}
		widths, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`[...document.images].map(i => i.naturalWidth)`))
		if err != nil {
			t.Fatal(err)
		}
		if len(widths) != 2 || widths[0] == 0 || widths[1] == 0 {
			t.Errorf("%s: images not decoded, natural widths %v", system, widths)
		}
		by := served(t, lb.admin)
		if system == "async-balancer-http" && len(by) < 2 {
			// Per request, page.html and its two images cannot all go to one backend.
			t.Errorf("%s: the page's requests were served by %v, want more than one backend", system, by)
		}
		t.Logf("%s: served by %v", system, by)
		if err := chromedp.Do(ctx, chromedp.Navigate("http://"+lb.admin+"/"), chromedp.WaitReady("#backends")); err != nil {
			t.Fatal(err)
		}
		rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#backends tr[data-backend]").length`))
		if err != nil {
			t.Fatal(err)
		}
		if rows != 4 {
			t.Errorf("%s: stats page has %d backend rows, want 4", system, rows)
		}
	}
}

func TestBrowserShowsTheReport(t *testing.T) {
	testutil.NoteSources()
	ctx := testutil.Browser(t)
	cfg, _ := Load("")
	cfg.Quick()
	cfg.Systems = cfg.Systems[:2]
	_, dir := runAndReport(t, Options{Config: cfg})
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+filepath.Join(dir, "index.html")), chromedp.WaitReady("table.results")); err != nil {
		t.Fatal(err)
	}
	tables, err1 := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("table.results").length`))
	charts, err2 := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("figure.chart svg").length`))
	chartWidth, err3 := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.querySelector("figure.chart svg").getBoundingClientRect().width`))
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	if tables < 4 || charts != 4 || chartWidth < 100 {
		t.Errorf("index.html shows %d tables and %d charts (first %.0f px wide)", tables, charts, chartWidth)
	}
}
