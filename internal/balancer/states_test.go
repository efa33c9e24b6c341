package balancer

import (
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"loadlab/internal/testutil"
)

// The operator's states through the API, as HAProxy's: maint takes a
// backend out of traffic and out of the checks; drain out of new traffic
// but not of the checks; a backend added by the API is "checking" and
// serves only once rise checks have passed; ready from maintenance goes
// through the checks again.
func TestAPIStates(t *testing.T) {
	bss, cfgs := fourBackends(t)
	b := startBalancer(t, Config{Backends: cfgs[:2], Check: CheckConfig{Kind: "http", Path: "/santai", Interval: 100 * time.Millisecond, Rise: 3, Fall: 3}})
	a, err := StartAdmin(b, AdminConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	one, two := b.Pool().Find(bss[0].addr), b.Pool().Find(bss[1].addr)
	servedBy := func(n int) map[string]int {
		seen := map[string]int{}
		for range n {
			_, by, _, err := fetch(b.Addr().String(), "/")
			if err != nil {
				t.Fatal(err)
			}
			seen[by]++
		}
		return seen
	}

	// maint: no traffic, no checks.
	if code, body := adminDo(t, a, "PUT", "/api/backends/"+one.Name, `{"state":"maint"}`); code != 200 || !strings.Contains(body, `"state":"maint"`) {
		t.Fatalf("PUT maint: %d %s", code, body)
	}
	testutil.Eventually(t, 5*time.Second, "a check under way when maint came to end", func() bool { return !one.checking.Load() })
	checks := one.nChecksNow()
	if seen := servedBy(10); seen["b1"] != 0 || seen["b2"] != 10 {
		t.Errorf("in maintenance b1 served: %v", seen)
	}
	// Three check rounds, seen on the other backend: none may reach b1.
	others := two.nChecksNow()
	testutil.Eventually(t, 10*time.Second, "three check rounds", func() bool { return two.nChecksNow() >= others+3 })
	if got := one.nChecksNow(); got != checks {
		t.Errorf("%d checks of a backend in maintenance", got-checks)
	}
	// ready again: checked first (rise 3), then back in traffic.
	adminDo(t, a, "PUT", "/api/backends/"+one.Name, `{"state":"ready"}`)
	if s := one.State(); s != Checking && s != Ready {
		t.Errorf("out of maintenance: %s, want checking", s)
	}
	waitState(t, one, Ready, 5*time.Second)
	if one.nChecksNow()-checks < 3 {
		t.Errorf("back in traffic after %d checks, want rise's 3", one.nChecksNow()-checks)
	}

	// drain: no new traffic, still checked.
	adminDo(t, a, "PUT", "/api/backends/"+two.Name, `{"state":"drain"}`)
	checks = two.nChecksNow()
	if seen := servedBy(10); seen["b2"] != 0 {
		t.Errorf("drained b2 served: %v", seen)
	}
	testutil.Eventually(t, 5*time.Second, "a drained backend checked", func() bool { return two.nChecksNow() > checks })

	// Added by the API: checking until three checks pass, no traffic meanwhile.
	code, body := adminDo(t, a, "POST", "/api/backends", `{"addr":"`+bss[2].addr+`"}`)
	var added BackendStatus
	if code != 201 || json.Unmarshal([]byte(body), &added) != nil || added.State != "checking" {
		t.Fatalf("POST: %d %s, want a backend that is checking", code, body)
	}
	three := b.Pool().Find(bss[2].addr)
	for deadline := time.Now().Add(10 * time.Second); three.State() == Checking && time.Now().Before(deadline); {
		if seen := servedBy(2); seen["b3"] != 0 && three.nChecksNow() < 3 {
			t.Fatalf("b3 served before its checks passed: %v", seen)
		}
	}
	waitState(t, three, Ready, 5*time.Second)
	testutil.Eventually(t, 5*time.Second, "b3 in traffic", func() bool { return servedBy(4)["b3"] > 0 })
	if hist := three.Checks(); len(hist) < 3 || !hist[0].OK || hist[0].At.Before(hist[len(hist)-1].At) {
		t.Errorf("check history: %+v, want the newest first, passed", hist)
	}
	if code, _ := adminDo(t, a, "PUT", "/api/backends/"+three.Name, `{"state":"sleeping"}`); code != 400 {
		t.Errorf("an unknown state: %d, want 400", code)
	}
}

// nChecksNow is how many checks the backend has had.
func (b *Backend) nChecksNow() int {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	return b.nChecks
}

// http mode counts answers by class, per backend and at the frontend
// (the balancer's own 503s there only), and the page, the CSV at /;csv
// and the metrics all say so.
func TestStatusCodeCounts(t *testing.T) {
	bss, cfgs := fourBackends(t)
	b := startBalancer(t, Config{Mode: "http", Backends: cfgs[:1], Check: CheckConfig{Kind: "none"}})
	a, err := StartAdmin(b, AdminConfig{Listen: "127.0.0.1:0", Token: "s3cret", User: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for path, n := range map[string]int{"/": 3, "/nope": 2, "/video": 1} {
		for range n {
			fetch(b.Addr().String(), path)
		}
	}
	b.SetAdminState(b.Pool().Find(bss[0].addr), Maint)
	if status, _, _, _ := fetch(b.Addr().String(), "/"); status != 503 {
		t.Fatalf("with every backend in maintenance: %d, want 503", status)
	}
	s := b.Status()[0]
	if r := s.Responses; r == nil || r.C2xx != 3 || r.C3xx != 1 || r.C4xx != 2 || r.C5xx != 0 {
		t.Errorf("backend responses %+v, want 3 2xx, 1 3xx, 2 4xx", r)
	}
	fe := b.Frontend(b.Status())
	if r := fe.Responses; r == nil || r.C2xx != 3 || r.C4xx != 2 || r.C5xx != 1 || fe.Total != 7 || fe.Requests != 7 || fe.MaxActive < 1 {
		t.Errorf("frontend %+v responses %+v, want the backend's and the balancer's 503", fe, fe.Responses)
	}

	get := func(path string, auth ...string) (int, string) {
		return adminDo(t, a, "GET", path, "", auth...)
	}
	if code, _ := get("/;csv"); code != 401 {
		t.Errorf("CSV without credentials: %d", code)
	}
	if code, _ := get("/", "Authorization", "Basic b3BzOndyb25n"); code != 401 { // ops:wrong
		t.Errorf("basic auth with a wrong password: %d", code)
	}
	code, body := get("/;csv", "Authorization", "Basic b3BzOnMzY3JldA==") // ops:s3cret
	if code != 200 {
		t.Fatalf("CSV with basic auth: %d %s", code, body)
	}
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(rows) != 4 || rows[0][0] != "# pxname" || rows[1][1] != "FRONTEND" || rows[2][1] != bss[0].addr || rows[3][1] != "BACKEND" {
		t.Fatalf("CSV rows: %v %v", rows, err)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[strings.TrimPrefix(name, "# ")] = i
	}
	if rows[1][col["hrsp_5xx"]] != "1" || rows[2][col["hrsp_4xx"]] != "2" || rows[2][col["status"]] != "MAINT" || rows[1][col["stot"]] != "7" {
		t.Errorf("CSV figures: %v", rows)
	}
	_, page := get("/", "Authorization", "Bearer s3cret")
	for _, want := range []string{`<table id="frontend">`, "time to response head", `data-state="maint"`, "maint <small>for "} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	_, metrics := get("/metrics", "Authorization", "Bearer s3cret")
	for _, want := range []string{`loadlab_backend_http_responses_total{backend="` + bss[0].addr + `",code="4xx"} 2`,
		`loadlab_frontend_http_responses_total{code="5xx"} 1`, "loadlab_frontend_sessions_total 7", "loadlab_frontend_queue 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// A backup is one in every view of the pool: the API takes and changes
// it, and the JSON, the stats page, the CSV (HAProxy's act and bck) and
// the metrics say which backends are spares.
func TestBackupsInTheStats(t *testing.T) {
	bss, cfgs := fourBackends(t)
	b := startBalancer(t, Config{Backends: cfgs[:2], Check: CheckConfig{Kind: "none"}})
	a := startAdmin(t, b, "")
	if code, body := adminDo(t, a, "POST", "/api/backends", `{"addr":"`+bss[2].addr+`","backup":true}`); code != 201 || !strings.Contains(body, `"backup":true`) {
		t.Fatalf("add a backup: %d %s", code, body)
	}
	if code, _ := adminDo(t, a, "POST", "/api/backends", `{"addr":"`+bss[3].addr+`"}`); code != 201 {
		t.Fatalf("add an active: %d", code)
	}
	if code, body := adminDo(t, a, "PUT", "/api/backends/"+bss[1].addr, `{"backup":true}`); code != 200 || !b.Pool().Find(bss[1].addr).Backup() {
		t.Fatalf("make b2 a backup: %d %s", code, body)
	}
	if code, _ := adminDo(t, a, "PUT", "/api/backends/"+bss[3].addr, `{"weight":2}`); code != 200 || b.Pool().Find(bss[3].addr).Backup() {
		t.Fatalf("a change of weight made b4 a backup (%d)", code)
	}
	wantBackup := map[string]bool{bss[0].addr: false, bss[1].addr: true, bss[2].addr: true, bss[3].addr: false}

	_, body := adminDo(t, a, "GET", "/api/backends", "")
	var list []BackendStatus
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list) != 4 {
		t.Fatalf("list: %v %s", err, body)
	}
	for _, s := range list {
		if s.Backup != wantBackup[s.Name] {
			t.Errorf("JSON: %s backup %v", s.Name, s.Backup)
		}
	}

	rows, col := statsCSV(t, a, 7)
	for _, row := range rows[2:6] {
		act, bck := "1", "0"
		if wantBackup[row[col["svname"]]] {
			act, bck = "0", "1"
		}
		if row[col["act"]] != act || row[col["bck"]] != bck {
			t.Errorf("CSV: %s act %s bck %s, want %s %s", row[col["svname"]], row[col["act"]], row[col["bck"]], act, bck)
		}
	}
	if total := rows[6]; total[col["svname"]] != "BACKEND" || total[col["act"]] != "2" || total[col["bck"]] != "2" {
		t.Errorf("CSV BACKEND row: act %s bck %s, want 2 2", total[col["act"]], total[col["bck"]])
	}

	_, metrics := adminDo(t, a, "GET", "/metrics", "")
	for name, backup := range wantBackup {
		want := "0"
		if backup {
			want = "1"
		}
		if !strings.Contains(metrics, `loadlab_backend_backup{backend="`+name+`"} `+want+"\n") {
			t.Errorf("metrics: loadlab_backend_backup of %s is not %s", name, want)
		}
	}

	_, page := adminDo(t, a, "GET", "/", "")
	if n := strings.Count(page, ">backup</small>"); n != 2 {
		t.Errorf("the stats page marks %d backends backup, want 2", n)
	}
}
