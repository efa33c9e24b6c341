#!/usr/bin/env bash
# Does `loadlab lab` give the same answer twice? Runs the default
# experiment twice, back to back, and counts the cells (system × level)
# whose figures agree within ±10 % between the two runs, for two figures:
#   - each system's median req/s divided by async's at the same level
#     (a ratio: the machine's drift between the runs cancels out);
#   - the median server CPU time per request (µs), from /proc;
#   - the median server CPU ÷ client CPU per request (each repetition's
#     server CPU over the generator's, on the same requests: a host that
#     slows the guest's CPUs slows both alike);
#   - the report's "Against async" multiple: each repetition's req/s over
#     async's in the same round, the median of those (results.json's
#     per_reference; the first figure, taken round by round).
#
#   scripts/lab-repro.sh [extra loadlab lab flags...]
#
# Needs python3 to read the two results.json. Writes into a temporary
# folder (KEEP=dir: into dir, kept, for a closer look at the two runs),
# prints how far the machine's speed moved between the runs (the
# generator's CPU per request), one line per cell that disagrees, then
# the counts.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${KEEP:-}" ]; then
  work=$KEEP
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
go build -o "$work/loadlab" ./cmd/loadlab
for run in 1 2; do
  start=$(date +%s)
  "$work/loadlab" lab --ports auto --screenshots=false --out "$work/run$run" "$@" >"$work/run$run.log" 2>&1
  echo "run $run: $(( $(date +%s) - start )) s"
done
python3 - "$work/run1/results.json" "$work/run2/results.json" <<'PY'
import json, sys

def cells(path):
    res = json.load(open(path))
    out = {}
    for s in res["systems"]:
        for c in s.get("cells") or []:
            out[(s["name"], c["level"])] = dict(c["median"], per_reference=c.get("per_reference", 0))
    return out

a, b = cells(sys.argv[1]), cells(sys.argv[2])

# The generator does the same work per request in both runs: how far its
# CPU per request moved is how far the machine's speed did.
drift = sorted(b[k]["client_cpu_us_per_request"] / a[k]["client_cpu_us_per_request"]
               for k in a if k in b and a[k]["client_cpu_us_per_request"] > 0 and b[k]["client_cpu_us_per_request"] > 0)
if drift:
    print(f"the generator's CPU per request, run 2 ÷ run 1: median {drift[len(drift) // 2]:.2f} (the machine's change of speed)")

def agree(x, y):
    return x > 0 and y > 0 and abs(y / x - 1) <= 0.10

for name, key, fig in [("req/s ÷ async's", "ratio", None), ("server CPU per request", "cpu", "server_cpu_us_per_request"),
                       ("server ÷ client CPU", "cpu", "server_cpu_per_client_cpu"),
                       ("× async within rounds", "cpu", "per_reference")]:
    n = ok = 0
    for (sys_, lvl), m1 in sorted(a.items()):
        m2 = b.get((sys_, lvl))
        if m2 is None:
            continue
        if key == "ratio":
            if sys_ == "async" or ("async", lvl) not in a or ("async", lvl) not in b:
                continue
            x = m1["requests_per_second"] / a[("async", lvl)]["requests_per_second"]
            y = m2["requests_per_second"] / b[("async", lvl)]["requests_per_second"]
        else:
            x, y = m1[fig], m2[fig]
            if x == 0 and y == 0:
                continue  # not measured (a url: system; the reference's own multiple)
        n += 1
        if agree(x, y):
            ok += 1
        else:
            print(f"  {name:24s} {sys_:22s} c={lvl:<4d} {x:10.3f} → {y:10.3f} ({(y / x - 1) * 100 if x else 0:+.0f} %)")
    print(f"{name}: {ok} of {n} cells agree within ±10 % ({100 * ok / max(n, 1):.0f} %)")
PY
