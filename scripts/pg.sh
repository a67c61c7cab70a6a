# Helpers to run a private PostgreSQL 15 cluster on loopback, sourced by the other scripts.
# PostgreSQL refuses to run as root, so as root the cluster belongs to the "postgres" user.
#   pg_start DATADIR PORT [SERVER OPTIONS]
#                           initialise (first time) and start; trust auth, 127.0.0.1 only, no Unix socket
#   pg_stop DATADIR         fast shutdown (no-op when not running)
#   pg_free_port            print a free TCP port on 127.0.0.1

pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] || { echo "PostgreSQL server binaries not found: install postgresql-15" >&2; return 1; }
  echo "$dir"
}

pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
  local data=$1 port=$2 extra=${3:-} bin
  bin=$(pg_bindir) || return 1
  mkdir -p "$data"
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$data"
    # the postgres user must be able to reach the folder
    local parent; parent=$(dirname "$data")
    while [ "$parent" != / ]; do chmod o+x "$parent" 2>/dev/null || true; parent=$(dirname "$parent"); done
  fi
  chmod 700 "$data"
  if [ ! -f "$data/PG_VERSION" ]; then
    pg_as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$data.initdb.log" 2>&1 ||
      { cat "$data.initdb.log" >&2; return 1; }
  fi
  pg_as_owner "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='' -c max_connections=200 $extra" \
    start >/dev/null || { tail -n 20 "$data/server.log" >&2; return 1; }
}

pg_stop() {
  local data=$1 bin
  bin=$(pg_bindir) || return 1
  [ -f "$data/postmaster.pid" ] || return 0
  pg_as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
}

# Starts a server (as pg_start) on a free loopback port and prints the port. The port is probed, then
# bound by PostgreSQL a moment later: when another process took it in between, it tries a new one.
pg_start_on_free_port() {
  local data=$1 extra=${2:-} port attempt
  for attempt in 1 2 3 4 5; do
    port=$(pg_free_port)
    rm -f "$data/server.log"
    if pg_start "$data" "$port" "$extra" 2>"$data.start.err"; then
      echo "$port"
      return 0
    fi
    if ! grep -q "Address already in use" "$data/server.log" 2>/dev/null; then
      cat "$data.start.err" >&2
      return 1
    fi
    echo "pg.sh: port $port was taken before PostgreSQL bound it (attempt $attempt); trying another" >&2
  done
  cat "$data.start.err" >&2
  return 1
}

pg_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null ||
    node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
