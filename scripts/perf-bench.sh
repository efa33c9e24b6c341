#!/usr/bin/env bash
# loadlab bench against ab and wrk, side by side on nginx (1 worker, the
# lab's 31-byte body), alternating the tools; prints each run and the
# median ratio of each comparison, then CPU seconds per 10,000 requests.
#
#   scripts/perf-bench.sh [pairs] [seconds]
#
# Needs nginx, wrk and ab (apt-get install nginx wrk apache2-utils).
set -euo pipefail
pairs=${1:-3}; secs=${2:-10}
. "$(dirname "$0")/lib.sh"
url=http://127.0.0.1:18081/
start_nginx 18081

rps_ab() { awk '/^Requests per second/ {print $4}'; }
rps_wrk() { awk '/^Requests\/sec/ {print $2}'; }
cpu() { /usr/bin/time -f "%U %S" -o "$work/cpu" "$@" >"$work/out" 2>/dev/null; awk '{print $1+$2}' "$work/cpu"; }

echo "== no keep-alive, -c 100 -n 50000: loadlab bench / ab"
ratios=()
for p in $(seq "$pairs"); do
  a=$(ab -q -n 50000 -c 100 "$url" 2>/dev/null | rps_ab)
  l=$("$lb" bench -q -n 50000 -c 100 "$url" | rps_ab)
  r=$(awk -v a="$l" -v b="$a" 'BEGIN {printf "%.2f", a/b}'); ratios+=("$r")
  echo "pair $p: ab $a  loadlab $l  ratio $r"
done
echo "MEDIAN $(printf '%s\n' "${ratios[@]}" | median)"

echo "== keep-alive, 100 connections for ${secs}s: loadlab bench -k / wrk -t2"
ratios=()
for p in $(seq "$pairs"); do
  w=$(wrk -t2 -c100 -d"${secs}s" "$url" | rps_wrk)
  l=$("$lb" bench -q -k -c 100 -t "$secs" -n 100000000 "$url" | rps_ab)
  r=$(awk -v a="$l" -v b="$w" 'BEGIN {printf "%.2f", a/b}'); ratios+=("$r")
  echo "pair $p: wrk $w  loadlab $l  ratio $r"
done
echo "MEDIAN $(printf '%s\n' "${ratios[@]}" | median)"

echo "== -c 1 -n 5000: mean time per request, loadlab bench / ab"
ratios=()
for p in $(seq "$pairs"); do
  a=$(ab -q -n 5000 -c 1 "$url" 2>/dev/null | awk '/^Time per request:.*\(mean\)$/ {print $4}')
  l=$("$lb" bench -q -n 5000 -c 1 "$url" | awk '/^Time per request:.*\(mean\)$/ {print $4}')
  r=$(awk -v a="$l" -v b="$a" 'BEGIN {printf "%.3f", a/b}'); ratios+=("$r")
  echo "pair $p: ab $a ms  loadlab $l ms  ratio $r"
done
echo "MEDIAN $(printf '%s\n' "${ratios[@]}" | median)"

echo "== CPU seconds per 10,000 requests (user+system), new connection per request"
c=$(cpu ab -q -n 50000 -c 100 "$url"); echo "ab        $(awk -v c="$c" 'BEGIN {printf "%.3f", c/5}')"
c=$(cpu "$lb" bench -q -n 50000 -c 100 "$url"); echo "loadlab   $(awk -v c="$c" 'BEGIN {printf "%.3f", c/5}')"
c=$(cpu wrk -t2 -c100 -d5s -H 'Connection: close' "$url"); n=$(awk '/requests in/ {print $1}' "$work/out")
echo "wrk       $(awk -v c="$c" -v n="$n" 'BEGIN {printf "%.3f", c/n*10000}')"
echo "== CPU seconds per 10,000 requests, keep-alive"
c=$(cpu ab -q -k -n 200000 -c 100 "$url"); echo "ab        $(awk -v c="$c" 'BEGIN {printf "%.3f", c/20}')"
c=$(cpu "$lb" bench -q -k -n 200000 -c 100 "$url"); echo "loadlab   $(awk -v c="$c" 'BEGIN {printf "%.3f", c/20}')"
c=$(cpu wrk -t2 -c100 -d5s "$url"); n=$(awk '/requests in/ {print $1}' "$work/out")
echo "wrk       $(awk -v c="$c" -v n="$n" 'BEGIN {printf "%.3f", c/n*10000}')"
