#!/usr/bin/env bash
# The runbook's own way, by hand: the demo rollback's checks one after another with curl, the link
# switched with `ln -sfn`, the restart, and polling (no fixed sleeps). bench/bench_runbook.py times it.
#
#   runbook_by_hand.sh ROOT BASE_URL TARGET RESTART_COMMAND...
set -euo pipefail
root=$1 base=$2 target=$3
shift 3
restart=("$@")
cd "$root"

get() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$base$1"; }
version() { curl -s --max-time 5 "$base/version" || true; }

checks() {  # version, health twice in a row, the endpoints, 20 latency samples, SELECT 1
    local phase=$1 v
    v=$(version)
    echo "$phase version: $v"
    for _ in 1 2; do [ "$(get /health)" = 200 ] || echo "$phase health: failing"; done
    for path in / /api/orders; do echo "$phase endpoint $path: $(get "$path")"; done
    for _ in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' --max-time 5 "$base/"; done \
        | sort -n | sed -n '19p' | xargs echo "$phase latency p95 (s):"
    sqlite3 demo.db 'SELECT 1' >/dev/null && echo "$phase database: ok"
}

# preflight: the lock, the live version, health, the target release exists
exec 9>".current.rollback.lock"
flock -n 9 || { echo "another run holds the lock"; exit 10; }
echo "preflight live: $(version)"
[ "$(get /health)" = 200 ] || echo "preflight health: failing"
[ -d "releases/$target" ] || { echo "releases/$target missing"; exit 10; }

checks baseline

ln -sfn "releases/$target" current
"${restart[@]}" >/dev/null
until [ "$(version)" = "$target" ]; do :; done

checks verify
for _ in 1 2 3; do [ "$(version)" = "$target" ] || { echo "verify: not on $target"; exit 13; }; done
echo "rolled back to $target"
