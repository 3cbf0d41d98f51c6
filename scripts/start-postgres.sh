#!/usr/bin/env bash
# Start Debian's PostgreSQL 15 cluster and make the role and database the tests use.
# Idempotent; needs root (CI runs as root). Tests read HARNESS_TEST_PG_URL, whose default
# matches what this script creates.
set -euo pipefail

ROLE=harness
PASSWORD=harness-test-pw
DATABASE=harness

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(pg_lsclusters --no-header | awk 'NR==1 {print $1}')
cluster=$(pg_lsclusters --no-header | awk 'NR==1 {print $2}')
if [ -z "$version" ]; then
    echo "no PostgreSQL cluster found (pg_lsclusters is empty)" >&2
    exit 1
fi
pg_ctlcluster "$version" "$cluster" start 2>/dev/null || true
deadline=$((SECONDS + 30))
until su postgres -c "psql -qtAc 'SELECT 1'" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
        echo "PostgreSQL $version/$cluster did not accept connections within 30 s" >&2
        exit 1
    fi
    sleep 0.2
done
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'\"" | grep -q 1 ||
    su postgres -c "psql -qc \"CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'\""
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname = '$DATABASE'\"" | grep -q 1 ||
    su postgres -c "createdb -O $ROLE $DATABASE"
echo "PostgreSQL $version/$cluster is up: postgresql+psycopg://$ROLE:***@127.0.0.1:5432/$DATABASE"
