package lab

import (
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/procstat"
)

// A command that daemonizes — forks its server into a session of its own
// and exits, as nginx does without `daemon off;` and haproxy without -db —
// escapes the process group that the lab signals: the lab saw it exit,
// and its server ran on after the lab, never measured and never stopped.
// So while it runs, the lab is the subreaper of what it starts
// (PR_SET_CHILD_SUBREAPER): a process orphaned below it is reparented to
// the lab instead of to init, and there the lab finds it, says so and
// stops it.

// subreap makes this process the subreaper of its descendants, or no
// longer.
func subreap(on bool) {
	v := uintptr(0)
	if on {
		v = 1
	}
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, v, 0, 0, 0)
}

// escaped lists the processes reparented to the lab that left its
// session (nothing the lab starts does: each gets a process group of its
// own in the lab's session), or that are still in process group group,
// a command's: orphans its command left behind, or that are about to
// leave.
func escaped(group int) []procstat.Proc {
	self := os.Getpid()
	sid, _ := unix.Getsid(0)
	var found []procstat.Proc
	for _, p := range procstat.Processes() {
		if p.Parent == self && (p.Session != sid || p.Group == group) {
			found = append(found, p)
		}
	}
	return found
}

// escapeGrace is how long what escaped has to stop on SIGTERM.
const escapeGrace = 2 * time.Second

// stopEscaped stops and reaps what escaped (see escaped): SIGTERM to each
// one and its process group (a daemon's workers are in it), SIGKILL to
// what is left after escapeGrace. It names what was still running, as
// "nginx (pid 812), …", or is "" when nothing was.
func stopEscaped(group int) string {
	var names []string
	for _, p := range escaped(group) {
		if !p.Zombie {
			names = append(names, fmt.Sprintf("%s (pid %d)", p.Name, p.PID))
		}
	}
	signal := func(sig unix.Signal) {
		for _, p := range escaped(group) {
			unix.Kill(-p.Group, sig)
			unix.Kill(p.PID, sig)
		}
	}
	signal(unix.SIGTERM)
	deadline, killed := time.Now().Add(escapeGrace), false
	for {
		left := escaped(group)
		for _, p := range left {
			if p.Zombie {
				unix.Wait4(p.PID, nil, unix.WNOHANG, nil)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			if killed {
				break // unkillable (in the kernel, say): nothing more to do
			}
			signal(unix.SIGKILL)
			deadline, killed = time.Now().Add(escapeGrace), true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return strings.Join(names, ", ")
}
