#!/usr/bin/env bash
# Regression check: the work tree's loadlab against an earlier revision's,
# side by side in one run, alternating the two builds (who goes first
# swaps every pair). For serve (async), balance (tcp and http) and bench,
# prints each pair and the median ratio new/old of req/s.
#
#   scripts/perf-compare.sh REV [pairs] [seconds]
#
# serve and balance are loaded with wrk -t2 -c100 for the given seconds;
# bench runs -n 50000 -c 100 against nginx, new connection per request.
# The balancers of both builds share four backends of the work tree's
# serve. Needs wrk and nginx (apt-get install wrk nginx).
set -euo pipefail
rev=${1:?usage: scripts/perf-compare.sh REV [pairs] [seconds]}
pairs=${2:-5}; secs=${3:-5}
. "$(dirname "$0")/lib.sh"
git worktree add -q --detach "$work/old-tree" "$rev"
(cd "$work/old-tree" && go build -o "$work/old" ./cmd/loadlab)
git worktree remove --force "$work/old-tree"
new=$lb old=$work/old
start_nginx 18081

# Ports: serve new 19101, old 19102; backends 19002-19005; balance tcp
# new 14444, old 14446; http new 14445, old 14447.
"$new" serve --model async --listen 127.0.0.1:19101 --quiet 2>/dev/null &
"$old" serve --model async --listen 127.0.0.1:19102 --quiet 2>/dev/null &
backends=()
for p in 19002 19003 19004 19005; do
  "$new" serve --model async --listen 127.0.0.1:$p --quiet 2>/dev/null &
  backends+=(--backend 127.0.0.1:$p)
done
"$new" balance --quiet --mode tcp --listen 127.0.0.1:14444 "${backends[@]}" 2>/dev/null &
"$old" balance --quiet --mode tcp --listen 127.0.0.1:14446 "${backends[@]}" 2>/dev/null &
"$new" balance --quiet --mode http --listen 127.0.0.1:14445 "${backends[@]}" 2>/dev/null &
"$old" balance --quiet --mode http --listen 127.0.0.1:14447 "${backends[@]}" 2>/dev/null &
sleep 1

wrk_rps() { # port, extra wrk args
  local port=$1; shift
  wrk -t2 -c100 -d"${secs}s" "$@" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}'
}
bench_rps() { # binary
  "$1" bench -q -n 50000 -c 100 http://127.0.0.1:18081/ | awk '/^Requests per second/ {print $4}'
}

for test in "serve keepalive 19101 19102" "serve close 19101 19102" "balance-tcp close 14444 14446" \
  "balance-tcp keepalive 14444 14446" "balance-http keepalive 14445 14447" "balance-http close 14445 14447" "bench close - -"; do
  set -- $test
  hdr=(); [ "$2" = close ] && [ "$1" != bench ] && hdr=(-H 'Connection: close')
  ratios=()
  for p in $(seq "$pairs"); do
    for side in $([ $((p % 2)) = 1 ] && echo "old new" || echo "new old"); do
      if [ "$1" = bench ]; then
        v=$(bench_rps "${!side}")
      elif [ "$side" = new ]; then
        v=$(wrk_rps "$3" "${hdr[@]}")
      else
        v=$(wrk_rps "$4" "${hdr[@]}")
      fi
      printf -v "r_$side" '%s' "$v"
    done
    r=$(awk -v a="$r_new" -v b="$r_old" 'BEGIN {printf "%.2f", a/b}'); ratios+=("$r")
    echo "$1 $2 pair $p: old $r_old  new $r_new  ratio $r"
  done
  echo "$1 $2 MEDIAN new/old $(printf '%s\n' "${ratios[@]}" | median)"
done
