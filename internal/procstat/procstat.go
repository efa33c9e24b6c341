// Package procstat reads what loadlab measures of processes and of the
// machine from /proc: CPU time (the machine's, and stolen), a process
// tree's CPU time and resident memory, a process's descendants, and
// every process's parent, group and session, and who listens on a port.
package procstat

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CPUTimes is the machine's CPU time so far, from /proc/stat's first
// line, in clock ticks: all of it, and what the hypervisor took (steal).
type CPUTimes struct {
	Total, Steal uint64
}

// ReadCPUTimes reads /proc/stat.
func ReadCPUTimes() (CPUTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTimes{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	var t CPUTimes
	for i, f := range fields[1:] {
		n, _ := strconv.ParseUint(f, 10, 64)
		if i < 8 { // user nice system idle iowait irq softirq steal; guest time is inside user
			t.Total += n
		}
		if i == 7 {
			t.Steal = n
		}
	}
	return t, nil
}

// StealShare is the part of the CPU time between two readings that was
// stolen, from 0 to 1.
func StealShare(a, b CPUTimes) float64 {
	if b.Total <= a.Total {
		return 0
	}
	return float64(b.Steal-a.Steal) / float64(b.Total-a.Total)
}

// ProcessCPU is the CPU time the processes pids (and every thread of
// each) have run, from the scheduler's nanosecond counts
// (/proc/PID/task/TID/schedstat): a repetition lasts a tenth of a second,
// too short for /proc/PID/stat's 10 ms ticks.
func ProcessCPU(pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue
			}
			first, _, _ := strings.Cut(string(b), " ")
			ns, _ := strconv.ParseInt(first, 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum
}

// WithDescendants is pids and all their children, theirs, and so on: a
// prefork server's workers, a shell's program.
func WithDescendants(pids []int) []int {
	procs := Processes()
	all := append([]int(nil), pids...)
	for i := 0; i < len(all); i++ {
		for _, p := range procs {
			if p.Parent == all[i] {
				all = append(all, p.PID)
			}
		}
	}
	return all
}

// Proc is one process as /proc/PID/stat shows it.
type Proc struct {
	PID, Parent, Group, Session int
	Name                        string // the command's name, as ps shows it
	Zombie                      bool   // it has exited and waits to be reaped
}

// Processes lists every process on the machine.
func Processes() []Proc {
	var procs []Proc
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (name) state ppid pgrp session ...": the name may hold
		// spaces and parentheses, so the fields after it are found from
		// its last ')'.
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 4 {
			continue
		}
		p := Proc{PID: pid, Name: s[open+1 : end], Zombie: f[0] == "Z"}
		p.Parent, _ = strconv.Atoi(f[1])
		p.Group, _ = strconv.Atoi(f[2])
		p.Session, _ = strconv.Atoi(f[3])
		procs = append(procs, p)
	}
	return procs
}

// Listening is the processes that hold a TCP socket listening on port,
// on any address (from /proc/net/tcp and tcp6, then each process's
// descriptors): a server found by its port. Processes whose descriptors
// this one may not read are not found.
func Listening(port int) []Proc {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st ... uid timeout inode
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return nil
	}
	var found []Proc
	for _, p := range Processes() {
		dir := "/proc/" + strconv.Itoa(p.PID) + "/fd/"
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			if target, err := os.Readlink(dir + fd.Name()); err == nil && inodes[target] {
				found = append(found, p)
				break
			}
		}
	}
	return found
}

// RSS is a process's resident memory in bytes, from /proc/PID/status.
func RSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}
