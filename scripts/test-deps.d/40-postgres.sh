#!/usr/bin/env bash
# Installs and starts a local PostgreSQL on 127.0.0.1:5432 for tests/test_history.py, with the role and database
# the tests expect: postgresql://llmload:llmload@127.0.0.1:5432/llmload_test. Idempotent: each step checks first.
set -euo pipefail
URL_ROLE=llmload
URL_DB=llmload_test
if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "40-postgres: postgresql is not installed and this is not root; run: apt-get install postgresql" >&2
        exit 1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
        || { echo "40-postgres: apt-get install postgresql failed" >&2; exit 1; }
fi
as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -n -u postgres "$@"; fi
}
read -r VERSION CLUSTER PORT STATUS _ < <(pg_lsclusters --no-header | head -n1) \
    || { echo "40-postgres: no PostgreSQL cluster exists; run: pg_createcluster --start 15 main" >&2; exit 1; }
if [ "$PORT" != 5432 ]; then
    echo "40-postgres: cluster $VERSION/$CLUSTER listens on port $PORT; the tests expect 5432" >&2
    exit 1
fi
if [ "$STATUS" != online ]; then
    pg_ctlcluster "$VERSION" "$CLUSTER" start || { echo "40-postgres: could not start cluster $VERSION/$CLUSTER" >&2; exit 1; }
fi
for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "40-postgres: server did not accept connections on 127.0.0.1:5432" >&2; exit 1; }
if ! as_postgres psql -tAc "SELECT 1 FROM pg_roles WHERE rolname='$URL_ROLE'" | grep -q 1; then
    as_postgres psql -q -c "CREATE ROLE $URL_ROLE LOGIN PASSWORD '$URL_ROLE'"
fi
if ! as_postgres psql -tAc "SELECT 1 FROM pg_database WHERE datname='$URL_DB'" | grep -q 1; then
    as_postgres psql -q -c "CREATE DATABASE $URL_DB OWNER $URL_ROLE"
fi
