#!/usr/bin/env bash
# Start a Docker Engine in swarm mode for the swarm tests (tests/swarm), and make sure the static
# busybox the test images are made of is installed. Idempotent; needs root (CI runs as root).
#   - installs Debian's docker.io when dockerd is missing, and busybox-static when /bin/busybox is;
#   - starts dockerd (vfs storage, no iptables, no bridge: works in a container) in the
#     background, its log in /var/log/harness-dockerd.log, unless an engine already answers;
#   - waits (bounded) until `docker info` answers, then `docker swarm init` on loopback unless
#     this engine is already a swarm manager.
# Stop what it started with: kill "$(cat /run/harness-dockerd.pid)".
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

LOG=/var/log/harness-dockerd.log
PIDFILE=/run/harness-dockerd.pid
WAIT_S=60

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
[ -x /bin/busybox ] || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

engine_answers() { timeout 10 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

if ! engine_answers; then
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        : # ours, still starting
    else
        nohup dockerd --storage-driver=vfs --iptables=false --bridge=none \
            --pidfile=/run/harness-dockerd-self.pid >"$LOG" 2>&1 </dev/null &
        echo $! >"$PIDFILE"
    fi
    deadline=$((SECONDS + WAIT_S))
    until engine_answers; do
        if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
            echo "dockerd exited; the end of its log ($LOG):" >&2
            tail -n 20 "$LOG" >&2
            exit 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            echo "dockerd did not answer within ${WAIT_S} s; the end of its log ($LOG):" >&2
            tail -n 20 "$LOG" >&2
            exit 1
        fi
        sleep 0.2
    done
fi

state=$(docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}')
case "$state" in
"active true") ;;
"inactive "*) docker swarm init --advertise-addr 127.0.0.1 >/dev/null ;;
*)
    echo "this Docker Engine is in swarm state '$state', not a manager; the swarm tests need a manager" >&2
    exit 1
    ;;
esac
echo "Docker Engine $(docker info --format '{{.ServerVersion}}') is up and a swarm manager"
