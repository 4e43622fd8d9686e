# Real backing services on 127.0.0.1 for the test suite (scripts/test.sh) and the stack stage
# (scripts/stack.sh), without Docker: a throw-away PostgreSQL cluster, a Garage S3 server and a
# tansu Kafka-protocol broker, each on free ports under $WORK. Source it after setting WORK
# (a temp dir) and PYTHON (a python3); call services_stop from the caller's exit trap.
#
# Garage and tansu are installed with `cargo install` the first time (about 12 and 15 minutes),
# then reused from ~/.cargo/bin.

GARAGE_VERSION=2.5.0
TANSU_VERSION=0.6.0
SERVICES_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$SERVICES_ROOT/.venv
REQUIREMENTS=$SERVICES_ROOT/tests/interop/requirements.txt
PYTHON=

PG_DATA=
PG_ROOT=
PG_PORT=
PG_URL=
PGBIN=
GARAGE_PID=
GARAGE_S3_PORT=
TANSU_PID=
KAFKA_BROKERS=

# Installs the Debian packages given that are not installed yet (as root; otherwise says what
# is missing and exits). Packages with a daemon (nginx, postgresql, prometheus) must not start
# it: the suite runs its own.
apt_install_missing() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    echo "installing apt packages: ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        echo "error: need root to install ${missing[*]} (or install them yourself)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local policy=/usr/sbin/policy-rc.d made_policy=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    [[ -z $made_policy ]] || rm -f "$policy"
}

# Sets PYTHON: a Python >= 3.11 that can make venvs, the one on PATH if it can, else Debian's.
find_python() {
    if command -v python3 >/dev/null \
        && python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        PYTHON=$(command -v python3)
    else
        if command -v dpkg-query >/dev/null; then
            apt_install_missing python3 python3-venv
        fi
        PYTHON=/usr/bin/python3
    fi
    echo "python: $PYTHON ($("$PYTHON" --version 2>&1))"
}

# The venv at .venv with the pinned packages of tests/interop/requirements.txt (tuspy,
# schemathesis, tink, PyYAML…), made or brought up to date when the list changed.
ensure_venv() {
    if [[ -x $VENV/bin/python ]] && ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        echo "removing broken venv $VENV"
        rm -rf "$VENV"
    fi
    if [[ ! -x $VENV/bin/python ]]; then
        echo "creating venv $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp=$VENV/.requirements.sha256 want
    want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
    if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]] \
        || ! "$VENV/bin/python" -c 'import tusclient, cryptography, schemathesis, tink, yaml, olm, websockets' 2>/dev/null; then
        echo "installing $(grep -cv '^\s*\(#\|$\)' "$REQUIREMENTS") pinned Python packages"
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQUIREMENTS"
        echo "$want" >"$stamp"
    else
        echo "venv up to date: $VENV"
    fi
    "$VENV/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null \
        | grep -iE '^(tuspy|cryptography|requests|schemathesis|tink|pyyaml|python-olm|websockets)==' | tr '\n' ' '
    echo
}

# A free TCP port on 127.0.0.1.
free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits until 127.0.0.1:PORT accepts connections (at most SECONDS, default 30).
wait_for_port() {
    "$PYTHON" - "$1" "${2:-30}" <<'PY'
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
}

# tansu, a Kafka-protocol broker (its features give it storage engines that keep data).
install_tansu() {
    if ! cargo install --list | grep -q "^tansu v$TANSU_VERSION:"; then
        echo "installing tansu $TANSU_VERSION (cargo install, once per machine)"
        cargo install "tansu@$TANSU_VERSION" --locked --features dynostore,libsql
    fi
}

install_garage() {
    if ! garage --version 2>/dev/null | grep -qE "[ :v]$GARAGE_VERSION( |$)"; then
        echo "installing garage $GARAGE_VERSION (cargo install, once per machine)"
        cargo install "garage@$GARAGE_VERSION" --locked
    fi
}

# A throw-away PostgreSQL cluster in a temp dir on a free port; sets PG_URL (a superuser URL,
# so callers can create databases and roles), PG_ROOT (its socket directory) and PG_PORT.
start_postgres() {
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
    if [[ -z $PGBIN ]]; then
        apt_install_missing postgresql
        PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
    fi
    command -v psql >/dev/null || apt_install_missing postgresql-client
    local root port
    # Outside $WORK: the postgres user must be able to reach it.
    root=$(mktemp -d "${TMPDIR:-/tmp}/sealpost-pg.XXXXXX")
    PG_ROOT=$root
    chown postgres:postgres "$root"
    echo pw >"$root/pw"
    chown postgres "$root/pw"
    chmod 600 "$root/pw"
    port=$(free_port)
    runuser -u postgres -- "$PGBIN/initdb" -D "$root/data" -U postgres --pwfile="$root/pw" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$root/initdb.log"
    PG_DATA=$root/data
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_DATA" -l "$root/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $root -c fsync=off" start
    PG_PORT=$port
    PG_URL=postgres://postgres:pw@127.0.0.1:$port/postgres
    echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') ready at 127.0.0.1:$port"
}

# Runs SQL statements (one argument each) as the cluster's superuser.
psql_admin() {
    local args=() sql
    for sql in "$@"; do args+=(-c "$sql"); done
    runuser -u postgres -- psql -h "$PG_ROOT" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -q "${args[@]}"
}

# Garage, an S3-compatible server, single node in $WORK/garage on free ports, with bucket
# `media` and fixed test credentials (exported as the standard AWS variables); sets
# GARAGE_S3_PORT.
start_garage() {
    install_garage
    local dir=$WORK/garage secret g node rpc
    mkdir -p "$dir"
    GARAGE_S3_PORT=$(free_port)
    rpc=127.0.0.1:$(free_port)
    secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    cat >"$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "$rpc"
rpc_public_addr = "$rpc"
rpc_secret = "$secret"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$GARAGE_S3_PORT"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$(free_port)"
admin_token = "test-admin-token"
TOML
    g="garage -c $dir/garage.toml"
    $g server >"$dir/server.log" 2>&1 &
    GARAGE_PID=$!
    for _ in $(seq 1 100); do $g status >/dev/null 2>&1 && break; sleep 0.2; done
    node=$($g node id -q | cut -d@ -f1)
    $g layout assign -z dc1 -c 1G "$node" >/dev/null
    $g layout apply --version 1 >/dev/null
    $g key import --yes -n test GKtest00000001 test-secret-0123456789 >/dev/null
    $g key allow --create-bucket test >/dev/null
    $g bucket create media >/dev/null
    $g bucket allow --read --write --owner media --key test >/dev/null
    export AWS_ACCESS_KEY_ID=GKtest00000001 AWS_SECRET_ACCESS_KEY=test-secret-0123456789 \
        AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
    echo "garage $GARAGE_VERSION (pid $GARAGE_PID) ready, S3 at 127.0.0.1:$GARAGE_S3_PORT"
}

# tansu in memory on a free port; sets KAFKA_BROKERS.
start_tansu() {
    install_tansu
    local port log=$WORK/tansu.log
    port=$(free_port)
    tansu broker --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ >"$log" 2>&1 &
    TANSU_PID=$!
    if ! wait_for_port "$port" 30; then
        echo "error: tansu did not start; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    KAFKA_BROKERS=127.0.0.1:$port
    echo "tansu $TANSU_VERSION (pid $TANSU_PID) ready, Kafka protocol at $KAFKA_BROKERS"
}

# Stops whatever of the above was started.
services_stop() {
    local pid
    for pid in $GARAGE_PID $TANSU_PID; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $PG_DATA ]]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    [[ -z $PG_ROOT ]] || rm -rf "$PG_ROOT"
    GARAGE_PID= TANSU_PID= PG_DATA= PG_ROOT=
}
