package balancer

import (
	"bufio"
	"encoding/csv"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"loadlab/internal/testutil"
)

// answering starts a backend that reads a line and writes answer, or
// writes nothing and holds the connection when answer is "".
func answering(t *testing.T, answer string) string {
	t.Helper()
	ln := testutil.Listen(t)
	testutil.ServeEach(t, ln, func(c net.Conn) {
		bufio.NewReader(c).ReadString('\n')
		if answer == "" {
			io.Copy(io.Discard, c) // until the check gives up and closes
			return
		}
		io.WriteString(c, answer)
	})
	return ln.Addr().String()
}

// A check's result is named as HAProxy's check_status names it: the
// layer it got to and how it ended there, with the HTTP status.
func TestCheckStatusAsHAProxyNamesIt(t *testing.T) {
	closed := testutil.Listen(t)
	refused := closed.Addr().String()
	closed.Close()
	ok := answering(t, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
	for _, tc := range []struct {
		name, addr, kind, status string
		code                     int
	}{
		{"a connect", ok, "tcp", "L4OK", 0},
		{"a GET answered 200", ok, "http", "L7OK", 200},
		{"a GET answered 503", answering(t, "HTTP/1.1 503 Service Unavailable\r\n\r\n"), "http", "L7STS", 503},
		{"a GET never answered", answering(t, ""), "http", "L7TOUT", 0},
		{"a GET answered by something else", answering(t, "SSH-2.0-OpenSSH_9.2\r\n"), "http", "L7RSP", 0},
		{"a refused connect", refused, "tcp", "L4CON", 0},
	} {
		timeout := 10 * time.Second // ample: only the silent backend takes it
		if tc.status == "L7TOUT" {
			timeout = 300 * time.Millisecond
		}
		res := probe(NewBackend(tc.addr, 1), CheckConfig{Kind: tc.kind, Path: "/", Timeout: timeout}, "", nil)
		if res.Status != tc.status || res.Code != tc.code || res.OK != strings.HasSuffix(tc.status, "OK") {
			t.Errorf("%s: %+v, want %s %d", tc.name, res, tc.status, tc.code)
		}
	}
}

// A backend that fails its checks while up counts them (HAProxy's
// chkfail) and its fall (chkdown), and the CSV at /;csv and the metrics
// give them with the last check's status, code and duration. (A check
// of the live backend may time out too on a loaded machine: the counts
// are at least the fall's.)
func TestCheckCountsInTheStats(t *testing.T) {
	f := startFlaky(t)
	b := startBalancer(t, Config{Backends: []BackendConfig{{Addr: f.addr}},
		Check: CheckConfig{Kind: "http", Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, Rise: 2, Fall: 3}})
	a, err := StartAdmin(b, AdminConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	be := b.Pool().Find(f.addr)
	testutil.Eventually(t, 5*time.Second, "a passing check", func() bool { lc := be.LastCheck(); return lc != nil && lc.OK })
	f.setUp(t, false)
	waitState(t, be, Down, 5*time.Second)
	s := b.Status()[0]
	if s.ChecksFailed < 3 || s.ChecksDown < 1 || s.LastCheck.Status != "L4CON" {
		t.Errorf("after the fall: %d failed checks, %d falls, last %+v; want 3 or more, 1 or more, L4CON", s.ChecksFailed, s.ChecksDown, s.LastCheck)
	}
	f.setUp(t, true)
	waitState(t, be, Ready, 5*time.Second)

	rows, col := statsCSV(t, a, 4)
	row := rows[2]
	status, code := row[col["check_status"]], row[col["check_code"]]
	failed, _ := strconv.Atoi(row[col["chkfail"]])
	downs, _ := strconv.Atoi(row[col["chkdown"]])
	if !haproxyCheckStatus.MatchString(status) || status == "L7OK" && code != "200" || row[col["check_duration"]] == "" || failed < 3 || downs < 1 {
		t.Errorf("CSV row %v", row)
	}
	_, metrics := adminDo(t, a, "GET", "/metrics", "")
	for _, name := range []string{"loadlab_backend_check_failures_total", "loadlab_backend_check_up_down_total"} {
		m := regexp.MustCompile(name + `\{backend="` + regexp.QuoteMeta(f.addr) + `"\} (\d+)`).FindStringSubmatch(metrics)
		if m == nil || m[1] == "0" {
			t.Errorf("metrics: no %s above 0 for the backend", name)
		}
	}
}

var haproxyCheckStatus = regexp.MustCompile(`^L[467](OK|CON|TOUT|RSP|STS)$`)

// statsCSV reads the admin's CSV at /;csv, which must have n rows (the
// header, the frontend, each backend, the BACKEND total), and the
// index of each column by its name.
func statsCSV(t *testing.T, a *Admin, n int) (rows [][]string, col map[string]int) {
	t.Helper()
	_, body := adminDo(t, a, "GET", "/;csv", "")
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(rows) != n {
		t.Fatalf("CSV: %v %q", err, body)
	}
	col = map[string]int{}
	for i, name := range rows[0] {
		col[strings.TrimPrefix(name, "# ")] = i
	}
	return rows, col
}

// An http check sends check.host as its Host (the backend's address by
// default) and passes the statuses check.expect names, as HAProxy's
// http-check send hdr Host and http-check expect status.
func TestCheckHostAndExpect(t *testing.T) {
	ln := testutil.Listen(t)
	testutil.ServeEach(t, ln, func(c net.Conn) { // serves www.example only, as a name-based virtual host
		req, err := http.ReadRequest(bufio.NewReader(c))
		switch {
		case err != nil:
		case req.Host == "www.example":
			io.WriteString(c, "HTTP/1.0 200 OK\r\n\r\n")
		case req.URL.Path == "/moved":
			io.WriteString(c, "HTTP/1.0 301 Moved Permanently\r\nLocation: /\r\n\r\n")
		default:
			io.WriteString(c, "HTTP/1.0 404 Not Found\r\n\r\n")
		}
	})
	for _, tc := range []struct {
		name, path, host, expect, status string
		code                             int
	}{
		{"the address as Host", "/", "", "", "L7STS", 404},
		{"the name as Host", "/", "www.example", "", "L7OK", 200},
		{"the name, expect 200", "/", "www.example", "200", "L7OK", 200},
		{"the name, expect 204", "/", "www.example", "204", "L7STS", 200},
		{"a 404 expected", "/", "", "404", "L7OK", 404},
		{"a 301, 3xx passes by default", "/moved", "", "", "L7OK", 301},
		{"a 301, expect 2xx", "/moved", "", "2xx", "L7STS", 301},
		{"a 301, expect a list", "/moved", "", "200, 300-302", "L7OK", 301},
	} {
		cfg := CheckConfig{Kind: "http", Path: tc.path, Host: tc.host, Expect: tc.expect, Timeout: 10 * time.Second}
		if err := cfg.validate(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		res := probe(NewBackend(ln.Addr().String(), 1), cfg, "", nil)
		if res.Status != tc.status || res.Code != tc.code || res.OK != strings.HasSuffix(tc.status, "OK") {
			t.Errorf("%s: %+v, want %s %d", tc.name, res, tc.status, tc.code)
		}
	}
	for _, cfg := range []CheckConfig{
		{Kind: "http", Path: "/a b"}, {Kind: "http", Path: "/", Host: "a b"}, {Kind: "http", Path: "/", Host: "x\r\nInjected: 1"},
		{Kind: "http", Path: "/", Expect: "600"}, {Kind: "http", Path: "/", Expect: "2xx-3xx"}, {Kind: "http", Path: "/", Expect: "200,"},
		{Kind: "tcp", Path: "/", Expect: "200"}, {Kind: "tcp", Path: "/", Host: "www.example"},
	} {
		if err := cfg.validate(); err == nil {
			t.Errorf("%+v: taken", cfg)
		}
	}
}
