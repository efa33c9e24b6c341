package main

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"loadlab/internal/testutil"
)

// abCase is one command line given to ab and to loadlab bench, and what
// of their answers must agree: always the exit status; then the report's
// non-timing figures and labels, or what the flags make besides it.
type abCase struct {
	flags string   // the ab flags this case covers
	args  []string // {out} in an argument is a file of each tool's own
	check string   // report, labels (counts vary: -t), status, version, usage, files, html, verbose, proxy
}

// TestEveryABFlagAgainstAB runs Debian's ab and loadlab bench on the same
// server for every flag `ab -h` lists, alone and in common combinations,
// and compares what each prints and writes and how it exits. A flag that
// `ab -h` lists and no case covers fails the test.
func TestEveryABFlagAgainstAB(t *testing.T) {
	ab, err := exec.LookPath("ab")
	if err != nil {
		t.Skip("ab not installed (apt-get install apache2-utils); .ci/run installs it")
	}
	_, addr, _ := serve(t, "--model", "async", "--quiet")
	base := "http://" + addr
	tlsSrv := testutil.Start(t, nil, binary, "serve", "--listen", "127.0.0.1:0", "--quiet", "--tls-self-signed")
	secure := "https://" + tlsSrv.Addr()
	dir := t.TempDir()
	post := filepath.Join(dir, "form.txt")
	os.WriteFile(post, []byte("nama=Ani&nrp=0517"), 0o644)
	clientPEM := testutil.SelfSigned(t).CombinedPEM(t)
	proxy, seen := recordingProxy(t)
	ua := []string{"-H", "User-Agent: ApacheBench/2.3"} // the one header the two send differently

	cases := []abCase{
		{"n c", []string{"-n", "200", "-c", "10", base + "/"}, "report"},
		{"k", []string{"-k", "-n", "200", "-c", "10", base + "/"}, "report"},
		{"t", []string{"-t", "1", "-c", "5", base + "/"}, "labels"},
		{"s", []string{"-s", "5", "-n", "50", base + "/santai"}, "report"},
		{"b", []string{"-b", "65536", "-n", "50", base + "/"}, "report"},
		{"B", []string{"-B", "127.0.0.1", "-n", "50", base + "/"}, "report"},
		{"p T", append(ua, "-n", "50", "-c", "5", "-p", post, "-T", "application/x-www-form-urlencoded", base+"/form"), "report"},
		{"u", append(ua, "-n", "20", "-u", post, base+"/form"), "report"},
		{"v", []string{"-v", "2", "-n", "3", base + "/nope"}, "verbose"},
		{"v", []string{"-v", "3", "-n", "3", base + "/"}, "verbose"},
		{"v", []string{"-v", "4", "-n", "2", base + "/"}, "verbose"},
		{"w x y z", []string{"-w", "-x", "border=1", "-y", "class=r", "-z", "bgcolor=#eee", "-n", "20", base + "/"}, "html"},
		{"w", []string{"-w", "-k", "-n", "20", base + "/nope"}, "html"},
		{"i", []string{"-i", "-n", "50", base + "/testing.txt"}, "report"},
		{"C H A", []string{"-C", "a=1", "-C", "b=2", "-H", "X-A: 1", "-A", "u:p", "-n", "30", base + "/"}, "report"},
		{"m", []string{"-m", "DELETE", "-n", "20", base + "/"}, "report"},
		{"d", []string{"-d", "-n", "50", base + "/"}, "report"},
		{"S", []string{"-S", "-n", "50", base + "/"}, "report"},
		{"d S", []string{"-d", "-S", "-k", "-n", "50", base + "/"}, "report"},
		{"q", []string{"-q", "-n", "300", "-c", "3", base + "/"}, "report"},
		{"l", []string{"-l", "-n", "50", base + "/"}, "report"},
		// ab -r at a dead port says 10 complete and 15 failed of 10; bench
		// never counts more than -n (README: differences on purpose).
		{"r", []string{"-r", "-n", "10", base + "/nope"}, "report"},
		{"r", []string{"-r", "-n", "10", strings.Replace(base, addr, "127.0.0.1:1", 1) + "/"}, "status"},
		{"", []string{"-n", "10", strings.Replace(base, addr, "127.0.0.1:1", 1) + "/"}, "usage"}, // a dead port: ab's line and status
		{"g e", []string{"-g", "{out}.tsv", "-e", "{out}.csv", "-n", "60", "-c", "3", base + "/"}, "files"},
		{"X P", append(ua, "-X", proxy, "-P", "pu:pp", "-n", "5", "http://example.test:8080/x?y=1"), "proxy"},
		{"V", []string{"-V"}, "version"},
		{"h", []string{"-h"}, "usage"},
		{"", []string{"-c", "20", "-n", "10", base + "/"}, "usage"},
		{"Z f", []string{"-f", "TLS1.2", "-Z", "ECDHE-ECDSA-AES128-GCM-SHA256", "-n", "20", secure + "/"}, "report"},
		{"I", []string{"-I", "-n", "20", secure + "/"}, "report"},
		{"E", []string{"-E", clientPEM, "-n", "20", secure + "/"}, "report"},
		{"", []string{"-n", "50", addr + "/"}, "report"}, // no scheme, as ab takes it
	}

	covered := map[string]bool{}
	for _, c := range cases {
		for _, f := range strings.Fields(c.flags) {
			covered[f] = true
		}
	}
	help, _ := exec.Command(ab, "-h").CombinedOutput()
	for _, m := range regexp.MustCompile(`(?m)^\s+-(\w)\s`).FindAllStringSubmatch(string(help), -1) {
		if !covered[m[1]] {
			t.Errorf("ab -h lists -%s, and no case here covers it", m[1])
		}
	}

	for i, c := range cases {
		abArgs, ourArgs := files(c.args, filepath.Join(dir, "ab"+itoa(i))), files(c.args, filepath.Join(dir, "ll"+itoa(i)))
		seen.reset()
		abOut, abCode := run(ab, abArgs...)
		abSeen := seen.reset()
		ours, ourCode := run(binary, append([]string{"bench"}, ourArgs...)...)
		ourSeen := seen.reset()
		if abCode != ourCode {
			t.Errorf("%v: exit %d, ab's %d\nab:\n%s\nours:\n%s", c.args, ourCode, abCode, abOut, ours)
			continue
		}
		switch c.check {
		case "report", "proxy":
			want, got := figures(abOut), figures(ours)
			if !maps(want, got) {
				t.Errorf("%v: figures %v, ab's %v", c.args, got, want)
			}
			if a, o := labels(abOut), labels(ours); strings.Join(a, "|") != strings.Join(o, "|") {
				t.Errorf("%v: report lines differ from ab's:\nab:   %q\nours: %q", c.args, a, o)
			}
			if c.check == "proxy" && (len(abSeen) == 0 || !slices.Equal(abSeen, ourSeen)) {
				t.Errorf("%v: the proxy got\n%q\nfrom ours, and from ab\n%q", c.args, ourSeen, abSeen)
			}
		case "labels":
			if a, o := labels(abOut), labels(ours); strings.Join(a, "|") != strings.Join(o, "|") {
				t.Errorf("%v: report lines differ from ab's:\nab:   %q\nours: %q", c.args, a, o)
			}
		case "verbose":
			if a, o := traceLines(abOut), traceLines(ours); !slices.Equal(a, o) {
				t.Errorf("%v: -v lines differ:\nab:   %q\nours: %q", c.args, a, o)
			}
		case "html":
			if a, o := tags(abOut), tags(ours); !slices.Equal(a, o) {
				t.Errorf("%v: HTML differs:\nab:   %q\nours: %q", c.args, a, o)
			}
		case "files":
			for _, ext := range []string{".tsv", ".csv"} {
				a, o := testutil.ReadFile(t, filepath.Join(dir, "ab"+itoa(i))+ext), testutil.ReadFile(t, filepath.Join(dir, "ll"+itoa(i))+ext)
				if shape(string(a)) != shape(string(o)) {
					t.Errorf("%v: %s file's shape %q, ab's %q", c.args, ext, shape(string(o)), shape(string(a)))
				}
			}
		case "status": // the exit status is all that is compared
		case "version":
			if !strings.HasPrefix(abOut, "This is ApacheBench") || !strings.HasPrefix(ours, "This is loadlab bench") {
				t.Errorf("-V: %q and ab's %q", ours, abOut)
			}
		case "usage":
			if ourCode == 0 || strings.Contains(ours, "goroutine") {
				t.Errorf("%v: exit %d: %s", c.args, ourCode, ours)
			}
		}
	}
}

// recordingProxy answers every request itself, as a proxy in front of a
// server would, and keeps each request's lines but the User-Agent.
func recordingProxy(t *testing.T) (string, *requestLog) {
	log := &requestLog{}
	ln := testutil.Listen(t)
	testutil.ServeEach(t, ln, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		log.add(req.Method + " " + req.RequestURI + " " + req.Proto + " Host=" + req.Host + " Proxy-Authorization=" + req.Header.Get("Proxy-Authorization"))
		c.Write([]byte("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	})
	return ln.Addr().String(), log
}

type requestLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *requestLog) add(s string) { l.mu.Lock(); l.lines = append(l.lines, s); l.mu.Unlock() }

// reset returns what was logged since the last reset.
func (l *requestLog) reset() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lines
	l.lines = nil
	return out
}

// run runs a program and returns its output (stdout and stderr) and
// exit status.
func run(prog string, args ...string) (string, int) {
	out, err := exec.Command(prog, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		return err.Error(), -1
	}
	return string(out), 0
}

// files puts each tool's own file name where an argument says {out}.
func files(args []string, out string) []string {
	var r []string
	for _, a := range args {
		r = append(r, strings.ReplaceAll(a, "{out}", out))
	}
	return r
}

// figures are the non-timing figures of a report, by label.
func figures(out string) map[string]string {
	f := map[string]string{}
	for _, label := range []string{"Complete requests", "Failed requests", "Document Length", "Total transferred",
		"HTML transferred", "Non-2xx responses", "Keep-Alive requests", "Total body sent", "Server Port", "Document Path", "Concurrency Level"} {
		if m := regexp.MustCompile(`(?m)^` + label + `:\s+(\S+)`).FindStringSubmatch(out); m != nil {
			f[label] = m[1]
		}
	}
	if m := regexp.MustCompile(`\(Connect: \d+, Receive: \d+, Length: \d+, Exceptions: \d+\)`).FindString(out); m != "" {
		f["failures"] = m
	}
	return f
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// traceLines are -v's lines, without the ones that differ by nature: the
// date, the client's name and the banner.
func traceLines(out string) []string {
	var ls []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimRight(l, "\r")
		switch {
		case strings.HasPrefix(l, "Date:"), strings.HasPrefix(l, "User-Agent:"), strings.HasPrefix(l, "WARNING: The median"):
		case strings.HasPrefix(l, "LOG:"), strings.HasPrefix(l, "INFO:"), strings.HasPrefix(l, "WARNING:"), strings.HasPrefix(l, "HTTP/"),
			strings.HasPrefix(l, "GET "), strings.HasPrefix(l, "Host:"), strings.HasPrefix(l, "Content-"):
			ls = append(ls, l)
		}
	}
	return ls
}

// tags are the HTML report's tags, attributes included, in order.
func tags(out string) []string {
	i := strings.Index(out, "<table")
	if i < 0 {
		return nil
	}
	return regexp.MustCompile(`<[^>]+>`).FindAllString(out[i:], -1)
}

// shape is a file's header and its number of lines.
func shape(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first + " / " + itoa(strings.Count(s, "\n")) + " lines"
}

func itoa(n int) string { return strconv.Itoa(n) }
