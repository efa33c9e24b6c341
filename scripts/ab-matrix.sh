#!/usr/bin/env bash
# The lab's ApacheBench matrix, for the record: ab -n 1000 -c C for
# C = 1 5 10 30 50 75 100 against one URL, as a markdown table with the
# seed's nine columns (Time per request is ab's "across all concurrent
# requests" figure, as in the seed).
#
#   scripts/ab-matrix.sh URL [n]
set -euo pipefail
url=$1; n=${2:-1000}
echo "| No test | Concurrency level | Time taken for test (seconds) | Complete request | Failed request | Total transferred (bytes) | Request per second | Time per request (ms) | Transfer rate (Kbytes/sec) |"
echo "|:-------:|:-----------------:|:-----------------------------:|:----------------:|:--------------:|:-------------------------:|:------------------:|:---------------------:|:--------------------------:|"
i=0
for c in 1 5 10 30 50 75 100; do
  i=$((i + 1))
  ab -q -n "$n" -c "$c" "$url" 2>/dev/null | awk -v i="$i" -v c="$c" '
    /^Time taken for tests:/ {t=$5}
    /^Complete requests:/ {done=$3}
    /^Failed requests:/ {failed=$3}
    /^Total transferred:/ {total=$3}
    /^Requests per second:/ {rps=$4}
    /^Time per request:.*across all/ {tpr=$4}
    /^Transfer rate:/ {rate=$3}
    END {printf "| %d | %d | %s | %s | %s | %s | %s | %s | %s |\n", i, c, t, done, failed, total, rps, tpr, rate}'
done
