package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"loadlab/internal/testutil"
)

// abFigures pulls the figures that must agree between ab and loadlab bench.
func abFigures(t *testing.T, out string) map[string]string {
	t.Helper()
	figures := map[string]string{}
	for _, label := range []string{"Complete requests", "Failed requests", "Document Length", "Total transferred", "HTML transferred", "Non-2xx responses"} {
		m := regexp.MustCompile(`(?m)^` + label + `:\s+(\d+)`).FindStringSubmatch(out)
		if m != nil {
			figures[label] = m[1]
		}
	}
	if figures["Complete requests"] == "" {
		t.Fatalf("no report in:\n%s", out)
	}
	return figures
}

// labels lists the report's line labels in order, to hold the text to ab's.
func labels(out string) []string {
	var ls []string
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, ":"); i > 0 && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "Tail") &&
			!strings.HasPrefix(line, "WARNING") && !strings.HasPrefix(line, "ERROR") &&
			!strings.HasPrefix(line, "This is") && !strings.HasPrefix(line, "Copyright") && !strings.HasPrefix(line, "Licensed") {
			ls = append(ls, line[:i])
		}
	}
	return ls
}

// agreesWithAB runs ab and bench with args and checks that bench's
// report has ab's lines in ab's order and ab's non-timing figures; it
// returns both reports for more checks.
func agreesWithAB(t *testing.T, ab string, args []string) (abOut, ours string) {
	t.Helper()
	a, err := exec.Command(ab, args...).Output() // its progress lines go to stderr
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("ab %v: %v\n%s", args, err, stderr)
	}
	o, err := exec.Command(binary, append([]string{"bench", "-q"}, args...)...).Output()
	if err != nil {
		t.Fatalf("loadlab bench %v: %v", args, err)
	}
	abOut, ours = string(a), string(o)
	want, got := abFigures(t, abOut), abFigures(t, ours)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%v: %s is %s, ab says %s", args, k, got[k], v)
		}
	}
	if a, o := labels(abOut), labels(ours); strings.Join(a, "|") != strings.Join(o, "|") {
		t.Errorf("%v: report lines differ from ab's:\nab:   %q\nours: %q", args, a, o)
	}
	return abOut, ours
}

func TestBenchAgreesWithAB(t *testing.T) {
	testutil.NoteSources()
	ab, err := exec.LookPath("ab")
	if err != nil {
		t.Skip("ab not installed (apt-get install apache2-utils); .ci/run installs it")
	}
	_, addr, _ := serve(t, "--model", "async", "--quiet")
	post := filepath.Join(t.TempDir(), "form.txt")
	os.WriteFile(post, []byte("nama=Ani&nrp=0517"), 0o644)
	base := "http://" + addr
	for _, args := range [][]string{
		{"-n", "500", "-c", "10", base + "/"},
		{"-k", "-n", "500", "-c", "10", base + "/"},
		{"-n", "101", "-c", "7", base + "/santai"},
		{"-i", "-n", "50", "-c", "5", base + "/testing.txt"},
		{"-n", "40", "-c", "4", base + "/payload-100k.bin"},
		{"-n", "60", "-c", "3", base + "/nope"},
		{"-n", "50", "-c", "5", "-p", post, "-T", "application/x-www-form-urlencoded", base + "/form"},
	} {
		agreesWithAB(t, ab, args)
	}
}

func TestBenchCommandLine(t *testing.T) {
	testutil.NoteSources()
	_, addr, _ := serve(t, "--model", "async", "--quiet")
	url := "http://" + addr + "/"
	exit := func(err error) int {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			return -1
		}
		return 0
	}
	for _, args := range [][]string{{"-n", "x", url}, {"-n", "0", url}, {"-c", "0", url}, {"-c", "20", "-n", "10", url}, {}, {"-n", "5", "ftp://x/"}, {"--format", "xml", url}} {
		out, err := exec.Command(binary, append([]string{"bench"}, args...)...).CombinedOutput()
		if exit(err) != 22 || strings.Count(strings.TrimSpace(string(out)), "\n") != 1 {
			t.Errorf("%v: exit %d, output %q; want 22 and one line plus the help hint", args, exit(err), out)
		}
	}
	// A body file that never ends (a device) is refused at its bound, in
	// one line, where reading it whole ran the machine out of memory.
	if out, err := exec.Command(binary, "bench", "-n", "1", "-p", "/dev/zero", url).CombinedOutput(); exit(err) == 0 ||
		string(out) != "loadlab: /dev/zero is larger than 64 MiB: bench holds the body in memory and sends it with every request; give a smaller file\n" {
		t.Errorf("-p /dev/zero: exit %d, %q", exit(err), out)
	}
	ln := strings.Replace(url, addr, "127.0.0.1:1", 1)
	// As ab: its message, no report, and the errno as the status.
	if out, err := exec.Command(binary, "bench", "-n", "5", ln).CombinedOutput(); exit(err) != 111 || !strings.HasSuffix(string(out), "(be patient)...apr_socket_recv: Connection refused (111)\n") {
		t.Errorf("refused: exit %d, %q", exit(err), out)
	}

	dir := t.TempDir()
	cmd := exec.Command(binary, "bench", "-n", "200", "-c", "1,5", "-e", dir+"/p.csv", "-g", dir+"/g.tsv", url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	if !strings.Contains(text, "=== Concurrency level 5 (2 of 2) ===") || !strings.Contains(text, "| No test | Concurrency level |") ||
		strings.Count(text, "Percentage of the requests served") != 2 {
		t.Errorf("matrix output:\n%s", text)
	}
	if !strings.Contains(stderr.String(), "Completed 100 requests\nCompleted 200 requests\nFinished 200 requests") {
		t.Errorf("progress: %q", stderr.String())
	}
	for _, f := range []string{"p.csv.c1", "p.csv.c5", "g.tsv.c5"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "g.tsv.c1")); strings.Count(string(b), "\n") != 201 {
		t.Errorf("gnuplot file has %d lines, want 201", strings.Count(string(b), "\n"))
	}

	out, err = exec.Command(binary, "bench", "-q", "-n", "100", "-c", "1,2", "--format", "json", url).Output()
	var doc struct {
		Runs []struct {
			Complete    int64
			Concurrency int
			Total       struct {
				P99 float64 `json:"p99_ms"`
			}
		}
	}
	if err != nil || json.Unmarshal(out, &doc) != nil || len(doc.Runs) != 2 || doc.Runs[1].Complete != 100 || doc.Runs[1].Concurrency != 2 {
		t.Errorf("json: %v %s", err, out)
	}
	out, _ = exec.Command(binary, "bench", "-q", "-n", "100", "-c", "1,2", "--format", "csv", url).Output()
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "label,url,concurrency") {
		t.Errorf("csv: %q", out)
	}
}
