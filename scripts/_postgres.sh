# A throwaway PostgreSQL cluster in a temporary folder, for the test suite's second run.
# start_postgres exports TEST_DATABASE_URL; the cluster is stopped and deleted on exit.
start_postgres() {
  local bindir
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$bindir" ]; then
    apt_install postgresql
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  PG_TMP=$(mktemp -d /tmp/crm-pg.XXXXXX)
  chmod 755 "$PG_TMP"
  local run=()
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$PG_TMP"; run=(runuser -u postgres --); fi
  local port
  port=$(.venv/bin/python -c "from webapp.embedded_redis import free_port; print(free_port())")
  "${run[@]}" "$bindir/initdb" -D "$PG_TMP/data" -U postgres -A trust -E UTF8 --no-sync >/dev/null
  "${run[@]}" "$bindir/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w -o \
    "-p $port -k $PG_TMP -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null
  PG_RUN=("${run[@]}"); PG_BIN="$bindir"
  export TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:$port/postgres"
  # What a fault test needs to restart the server mid-run.
  export TEST_PG_DATA="$PG_TMP/data" TEST_PG_BIN="$bindir" TEST_PG_RUNAS="${run[*]}"
  trap stop_postgres EXIT
}

stop_postgres() {
  if [ -n "${PG_TMP:-}" ] && [ -d "$PG_TMP" ]; then
    "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_TMP"
  fi
}
