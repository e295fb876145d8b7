# Sourced by the cluster benchmarks: a throwaway PostgreSQL cluster of Debian's postgresql
# (fsync on, as in production, trust login) on a free port in /tmp, stopped and removed when
# the script exits. Sets $pg_port and defines `psql` (as muster, on that port).
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pg_dir=$(mktemp -d /tmp/muster-bench-pg.XXXXXX)
pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
chown postgres:postgres "$pg_dir"
as_pg() { runuser -u postgres -- "$@"; }
as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U muster -A trust -E UTF8 >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c shared_buffers=1GB -c max_connections=300" -l "$pg_dir/log" -w start >/dev/null
trap 'as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null; rm -rf "$pg_dir"' EXIT
psql() { command psql -q -h 127.0.0.1 -p "$pg_port" -U muster "$@"; }
