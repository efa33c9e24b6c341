// Package procstat reads what loadlab measures of processes and of the
// machine from /proc: CPU time (the machine's, and stolen), a process
// tree's CPU time and resident memory, and a process's descendants.
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
	parent := map[int]int{}
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
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 {
			parent[pid], _ = strconv.Atoi(fields[1])
		}
	}
	all := append([]int(nil), pids...)
	for i := 0; i < len(all); i++ {
		for child, pp := range parent {
			if pp == all[i] {
				all = append(all, child)
			}
		}
	}
	return all
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
