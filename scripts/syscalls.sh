#!/usr/bin/env bash
# System calls per request, counted with `strace -c`, for `loadlab serve`
# models and nginx (1 worker, `return 200` of the same body): N requests,
# each on a new connection (the lab's ab runs), then N on 10 kept-alive
# connections. Prints calls per request for each system call and server.
#
#   scripts/syscalls.sh [requests] [models...]
#
# Needs strace and nginx (apt-get install strace nginx). Uses 127.0.0.1
# ports 18081 (nginx) and 19002 (loadlab).
set -euo pipefail
n=${1:-2000}; shift $(( $# >= 1 ? 1 : 0 ))
models=("${@:-async thread}")
read -r -a models <<<"${models[*]}"
. "$(dirname "$0")/lib.sh"

# count NAME PID URL MODE: strace -c on PID and its threads while bench
# sends n requests; writes "NAME MODE syscall calls/request" lines.
count() {
  local name=$1 pid=$2 url=$3 mode=$4 k=()
  [ "$mode" = keepalive ] && k=(-k)
  strace -c -f -p "$pid" -o "$work/strace.$name.$mode" &
  local st=$!
  sleep 0.5 # strace attaches
  "$lb" bench -q "${k[@]}" -n "$n" -c 10 "$url" >/dev/null
  kill -INT "$st"; wait "$st" || true
  awk -v name="$name" -v mode="$mode" -v n="$n" \
    '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { printf "%s %s %s %.2f\n", name, mode, $NF, $4 / n }' \
    "$work/strace.$name.$mode" >>"$work/table"
}

: >"$work/table"
start_nginx 18081
worker=$(pgrep -P "$nginx_pid" | head -1)
for mode in close keepalive; do count nginx "$worker" http://127.0.0.1:18081/ "$mode"; done
for model in "${models[@]}"; do
  "$lb" serve --model "$model" --listen 127.0.0.1:19002 --quiet 2>"$work/serve.log" &
  pid=$!
  until grep -q "ready on" "$work/serve.log"; do sleep 0.1; done
  for mode in close keepalive; do count "$model" "$pid" http://127.0.0.1:19002/ "$mode"; done
  kill -TERM "$pid"; wait "$pid" || true
done

# One table per mode: a row per system call, a column per server.
python3 - "$work/table" "nginx ${models[*]}" <<'PY'
import sys, collections
rows = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    name, mode, call, per = line.split()
    rows[(mode, call)][name] = float(per)
servers = sys.argv[2].split()
for mode in ("close", "keepalive"):
    print(f"\n{mode}: system calls per request")
    print("| call | " + " | ".join(servers) + " |")
    print("|---|" + "---|" * len(servers))
    calls = sorted({c for m, c in rows if m == mode}, key=lambda c: -max(rows[(mode, c)].values()))
    tot = collections.Counter()
    for c in calls:
        r = rows[(mode, c)]
        if max(r.values()) < 0.01:
            continue
        for s in servers:
            tot[s] += r.get(s, 0)
        print(f"| {c} | " + " | ".join(f"{r.get(s, 0):.2f}" for s in servers) + " |")
    print("| **total** | " + " | ".join(f"**{tot[s]:.2f}**" for s in servers) + " |")
PY
