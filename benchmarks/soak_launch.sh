#!/usr/bin/env bash
# Run the distributed-job tests (the two-host job over ssh between network
# namespaces, tests/test_hosts.py, and the local launcher tests,
# tests/test_launch.py) N times in a row (default 20), stopping at the first
# failure; every SIGTERM run there must exit 143 within 10 s of rank 0's
# checkpoint line (the tests assert it).  Prints one line per round and the
# closing count; the log of each round is kept in $LOGS (default
# benchmarks/results/soak_launch/).  Needs root, iproute2 and
# openssh-server for the two-host tests: a round in which any test was
# skipped counts as failed (a soak that skipped them proves nothing).
#   bash benchmarks/soak_launch.sh [N] [extra pytest arguments]
set -u
cd "$(dirname "$0")/.."
rounds=${1:-20}; shift || true
logs=${LOGS:-benchmarks/results/soak_launch}
mkdir -p "$logs"
python=${PYTHON:-.venv/bin/python}
passed=0
for i in $(seq 1 "$rounds"); do
    start=$(date +%s)
    if "$python" -m pytest -q -rs -p no:cacheprovider tests/test_hosts.py \
            tests/test_launch.py "$@" > "$logs/round-$i.log" 2>&1 \
            && ! tail -n 1 "$logs/round-$i.log" | grep -q skipped; then
        passed=$((passed + 1))
        echo "round $i: $(tail -n 1 "$logs/round-$i.log") ($(( $(date +%s) - start )) s)"
    else
        echo "round $i FAILED: $(tail -n 1 "$logs/round-$i.log"); see $logs/round-$i.log"
        echo "$passed passed, 1 failed"
        exit 1
    fi
done
echo "$passed passed, 0 failed"
