#!/usr/bin/env bash
# What `make test` needs besides Python, set up before the tests run:
#   - PostgreSQL with the test role and database (tests/integration/test_database_postgres.py);
#   - Debian's Chromium at /usr/bin/chromium (tests/report renders the HTML report);
#   - a Docker Engine in swarm mode and Debian's static busybox (tests/swarm; scripts/start-docker.sh);
#   - Debian's openssh-server (/usr/sbin/sshd): tests/ssh starts one sshd per "host" on loopback ports.
#   - Debian's nginx and HAProxy programs (tests/traffic, tests/bluegreen start their own on loopback ports;
#     the system services are not used).
# As root it installs and starts them. Otherwise it says, in one line each, what it could not do
# and how to do it; the tests that need them then fail with the same advice. Never fails itself.
set -uo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

say() { echo "make test: $*" >&2; }
root=false
[ "$(id -u)" = 0 ] && root=true
if $root; then
    say "as root, installing (from Debian's packages) and starting what the tests need, if not there yet:" \
        "PostgreSQL 15 with a test role, a Docker Engine in swarm mode, Chromium, nginx, HAProxy, openssh-server"
fi

postgres_answers() {
    timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5432' 2>/dev/null
}

if [ -n "${HARNESS_TEST_PG_URL:-}" ]; then
    :  # the tests use the server this points at
elif $root; then
    bash scripts/start-postgres.sh || say "could not start PostgreSQL (see above); its tests will fail"
elif ! postgres_answers; then
    say "PostgreSQL is not running on 127.0.0.1:5432 and starting it needs root:" \
        "run 'sudo bash scripts/start-postgres.sh' (or set HARNESS_TEST_PG_URL); the PostgreSQL tests will fail"
fi

docker_ready() {
    [ -x /bin/busybox ] && timeout 10 docker info --format '{{.Swarm.ControlAvailable}}' 2>/dev/null | grep -q true
}

if $root; then
    bash scripts/start-docker.sh || say "could not start a Docker Engine in swarm mode (see above); the swarm tests will fail"
elif ! docker_ready; then
    say "no Docker Engine in swarm mode (or no /bin/busybox) and starting one needs root:" \
        "run 'sudo bash scripts/start-docker.sh'; the swarm tests will fail"
fi

if [ ! -x /usr/bin/chromium ]; then
    if $root; then
        echo "installing Debian's chromium for the report tests" >&2
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } ||
            say "could not install chromium (see above); the report-rendering tests will fail"
    else
        say "Chromium (/usr/bin/chromium) is missing and installing it needs root:" \
            "run 'sudo apt-get install -y chromium'; the report-rendering tests will fail"
    fi
fi
if [ ! -x /usr/sbin/sshd ]; then
    if $root; then
        echo "installing Debian's openssh-server for the SSH host tests" >&2
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends openssh-server >/dev/null; } ||
            say "could not install openssh-server (see above); the SSH host tests will be skipped"
    else
        say "OpenSSH's server (/usr/sbin/sshd) is missing and installing it needs root:" \
            "run 'sudo apt-get install -y openssh-server'; the SSH host tests (tests/ssh) are skipped without it"
    fi
fi

if [ ! -x /usr/sbin/nginx ] || [ ! -x /usr/sbin/haproxy ]; then
    if $root; then
        echo "installing Debian's nginx and haproxy for the traffic and blue/green tests" >&2
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx haproxy >/dev/null; } ||
            say "could not install nginx and haproxy (see above); the traffic and blue/green tests will fail"
        # The tests start their own nginx and HAProxy; the packages' services are not needed.
        for service in nginx haproxy; do
            service "$service" stop >/dev/null 2>&1 || true
        done
    else
        say "nginx (/usr/sbin/nginx) or HAProxy (/usr/sbin/haproxy) is missing and installing needs root:" \
            "run 'sudo apt-get install -y nginx haproxy'; the traffic and blue/green tests will fail"
    fi
fi
exit 0
