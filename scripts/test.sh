#!/usr/bin/env bash
# The whole test suite, as CI runs it (`bash .ci/run`) and as `make test` runs it.
#
#   1. tools: apt packages (only if missing: FFmpeg development libraries, clang, ffmpeg,
#      nginx-light, prometheus, postgresql, docker-compose, nodejs and npm, …), garage and tansu
#      (cargo install, once per machine), the Python venv at .venv and tus-js-client (npm ci)
#   2. cargo fmt --check, clippy -D warnings, cargo build --workspace --bins --locked (sealpost
#      and seal, which tests/seal_cli.rs runs),
#      cargo test --workspace --locked on the embedded defaults (SQLite + files + in-process
#      bus), then again on a throw-away PostgreSQL cluster, Garage S3 server and tansu Kafka
#      broker (every test gets a database and a bucket of its own; see the `testing` modules of
#      crates/db, crates/store and crates/bus)
#   3. the deploy files (docker-compose.yml validated by Debian's docker-compose, no engine
#      needed; every image pinned; Prometheus alert rules); sealed-media interop with Google
#      Tink in both directions (tests/interop/tink_interop.py); against the built binary:
#      OpenAPI document freshness, then a live server (SQLite + files in a temp dir) driven by
#      real clients with their ordinary APIs (tests/interop/tus_interop.py: tuspy;
#      tests/interop/tusjs: tus-js-client in Node, parallel uploads with concatenation and the
#      IETF draft modes; tests/interop/draft_curl.sh: curl at every draft interop version, 3 to
#      9; tests/interop/olm_interop.py: python-olm, a libolm client, exchanging messages and a
#      photo with `seal`) and by schemathesis, and the real clients again on
#      PostgreSQL + S3 + Kafka; the Dockerfile's build stage replayed (a release build,
#      scripts/image.py) and its runtime stage checked against what that build linked (and
#      those checks shown to refuse broken edits of the Dockerfile); the compose stack run
#      natively from its files with the replayed build's binaries and driven through nginx
#      (scripts/stack.sh).
#
# Ends with a line `N passed, N failed` counting the stages of step 3; exits non-zero if any
# stage failed. A cargo failure stops the run at once.
#
# Environment knobs:
#   SKIP_CARGO=1                 skip step 2 and use the existing target/debug/sealpost
#   CARGO_TEST_ARGS="…"          extra arguments for both cargo test runs (e.g. `--test links`)
#   SCHEMATHESIS_MAX_EXAMPLES=N  examples per operation (default 50)
#   SCHEMATHESIS_SEED=N          fixed seed for a reproducible schemathesis run
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/debug/sealpost
REPORT_DIR=$TARGET_DIR/test-reports

section() { printf '\n========== %s ==========\n' "$*"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sealpost-test.XXXXXX")
SERVER_PID=
S3_SERVER_PID=
# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
cleanup() {
    local rc=$?
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ -n $S3_SERVER_PID ]]; then
        kill -TERM "$S3_SERVER_PID" 2>/dev/null || true
        wait "$S3_SERVER_PID" 2>/dev/null || true
    fi
    services_stop
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
section "tools"

find_python

# FFmpeg's libraries, headers and libclang (ffmpeg-next's bindings are generated at build time)
# for crates/transcode, and the ffmpeg/ffprobe CLI that tests check renditions with.
bash "$ROOT/scripts/build-deps.sh" ffmpeg

# tansu, a Kafka-protocol broker: tests/chat_crash.rs restarts one of its own in both cargo
# test runs, and the second run shares one (start_tansu).
install_tansu
export SEALPOST_TEST_TANSU=${SEALPOST_TEST_TANSU:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}

# nginx for tests/nginx.rs and the stack (deploy/nginx/sealpost.conf in front of servers);
# Prometheus and promtool, Debian's docker-compose (validates the file; no engine) for the
# deploy stages.
apt_install_missing nginx-light prometheus docker-compose
export SEALPOST_TEST_NGINX=${SEALPOST_TEST_NGINX:-/usr/sbin/nginx}

ensure_venv

# Node and npm for tus-js-client (tests/interop/tusjs; Node >= 18).
command -v npm >/dev/null || apt_install_missing nodejs npm
echo "node $(node --version), npm $(npm --version)"

# ---------------------------------------------------------------------------------------------
if [[ ${SKIP_CARGO:-} == 1 ]]; then
    section "cargo (skipped: SKIP_CARGO=1)"
else
    section "cargo fmt --check; cargo clippy"
    cargo fmt --all --check
    cargo clippy --all-targets --workspace --locked -- -D warnings
    section "cargo build --workspace --bins --locked"
    cargo build --workspace --bins --locked
    section "cargo test --workspace --locked (SQLite + files)"
    # shellcheck disable=SC2086 # CARGO_TEST_ARGS is a list of arguments
    cargo test --workspace --locked ${CARGO_TEST_ARGS:-}

    section "PostgreSQL, S3 and Kafka (throw-away servers on 127.0.0.1)"
    start_postgres
    start_garage
    start_tansu
    section "cargo test --workspace --locked (PostgreSQL + S3 + Kafka)"
    SEALPOST_TEST_DATABASE=postgres SEALPOST_TEST_POSTGRES_URL=$PG_URL \
        SEALPOST_TEST_BLOB_STORE=s3 SEALPOST_TEST_S3_ENDPOINT=http://127.0.0.1:$GARAGE_S3_PORT \
        SEALPOST_TEST_BUS=kafka SEALPOST_TEST_KAFKA_BROKERS=$KAFKA_BROKERS \
        cargo test --workspace --locked ${CARGO_TEST_ARGS:-}
fi
[[ -x $BIN ]] || { echo "error: $BIN is missing; build it with cargo build" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
PASSED=0
FAILED=0
FAILED_STAGES=()
stage_result() { # name rc
    if [[ $2 -eq 0 ]]; then
        PASSED=$((PASSED + 1))
        echo "stage $1: PASS"
    else
        FAILED=$((FAILED + 1))
        FAILED_STAGES+=("$1")
        echo "stage $1: FAIL (exit $2)"
    fi
}

section "deploy files: docker-compose.yml, pinned images, Prometheus alert rules"
rc=0
docker-compose -f "$ROOT/docker-compose.yml" config -q || rc=$?
((rc == 0)) && echo "docker-compose.yml is valid"
"$PYTHON" "$ROOT/scripts/image.py" pins || rc=$?
promtool check rules "$ROOT/deploy/prometheus/alerts.yml" || rc=$?
stage_result deploy-config "$rc"

section "sealed media: interop with Google Tink (Python)"
rc=0
"$VENV/bin/python" "$ROOT/tests/interop/tink_interop.py" open-vectors "$ROOT/fixtures/crypto" || rc=$?
if ((rc == 0)); then
    "$VENV/bin/python" "$ROOT/tests/interop/tink_interop.py" seal "$ROOT/fixtures/crypto" "$WORK/tink" \
        && SEALPOST_TINK_DIR=$WORK/tink cargo test -q -p sealpost-crypto --test tink --locked \
        || rc=$?
fi
stage_result tink-interop "$rc"

section "openapi freshness"
rc=0
"$BIN" openapi >"$WORK/openapi.json"
if [[ ! -f $ROOT/openapi/openapi.json ]]; then
    echo "openapi/openapi.json does not exist."
    rc=1
elif ! diff -u "$ROOT/openapi/openapi.json" "$WORK/openapi.json" >"$WORK/openapi.diff"; then
    head -n 60 "$WORK/openapi.diff"
    echo "openapi/openapi.json differs from 'sealpost openapi' (diff above, first 60 lines)."
    rc=1
else
    echo "openapi/openapi.json matches 'sealpost openapi'"
fi
((rc == 0)) || echo "Regenerate it with: cargo run -q -- openapi > openapi/openapi.json"
stage_result openapi-freshness "$rc"

# ---------------------------------------------------------------------------------------------
section "start sealpost serve"
# start_sealpost NAME ARGS...: starts `sealpost serve` on a free port with ARGS, logging to
# $WORK/NAME.log, and waits until it is ready; sets STARTED_PID and STARTED_URL.
start_sealpost() {
    local name=$1 log=$WORK/$1.log url= ready=0
    shift
    env \
        SEALPOST__AUTH__ATTEMPTS_PER_PHONE_PER_MINUTE=100000 \
        SEALPOST__AUTH__ATTEMPTS_PER_ADDRESS_PER_MINUTE=100000 \
        SEALPOST__UPLOADS__MAX_ACTIVE_PER_ACCOUNT=100000 \
        SEALPOST__UPLOADS__REQUESTS_PER_ACCOUNT_PER_MINUTE=0 \
        SEALPOST__UPLOADS__MAX_ACTIVE_BYTES_PER_ACCOUNT=1125899906842624 \
        SEALPOST__SHUTDOWN_GRACE=5s \
        NO_COLOR=1 \
        "$BIN" serve --listen 127.0.0.1:0 "$@" </dev/null >"$log" 2>&1 &
    STARTED_PID=$!
    for _ in $(seq 1 300); do
        kill -0 "$STARTED_PID" 2>/dev/null || break
        url=$(sed 's/\x1b\[[0-9;]*m//g' "$log" \
            | grep -o 'sealpost listening on http://[^ ]*' | head -n1 | sed 's/.* //') || true
        [[ -n $url ]] && break
        sleep 0.1
    done
    if [[ -n $url ]]; then
        "$VENV/bin/python" - "$url/readyz" <<'PY' && ready=1
import sys, time, urllib.request
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(1)
PY
    fi
    if ((ready == 0)); then
        echo "error: sealpost ($name) did not become ready; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    STARTED_URL=$url
    echo "sealpost $name (pid $STARTED_PID) ready at $url"
}

SERVER_LOG=$WORK/embedded.log
mkdir -p "$WORK/data"
start_sealpost embedded --data-dir "$WORK/data"
SERVER_PID=$STARTED_PID
BASE_URL=$STARTED_URL

# ---------------------------------------------------------------------------------------------
section "tus interop (tuspy)"
rc=0
"$VENV/bin/python" "$ROOT/tests/interop/tus_interop.py" --base-url "$BASE_URL" || rc=$?
stage_result tus-interop "$rc"

TUSJS=$ROOT/tests/interop/tusjs
TUSJS_DEPS=0
# Real clients against a live server, each with its ordinary API: tus-js-client, curl at every
# IETF draft interop version, and python-olm (libolm) exchanging messages with `seal`. Run on
# this server and again on PostgreSQL + S3 + Kafka below.
real_clients() { # suffix base-url
    local rc
    section "tus interop (tus-js-client, Node)$1"
    rc=$TUSJS_DEPS
    ((rc != 0)) || node "$TUSJS/tus_js_interop.mjs" --base-url "$2" || rc=$?
    stage_result "tusjs-interop$1" "$rc"
    section "IETF draft, interop versions 3 to 9 (curl)$1"
    rc=0
    bash "$ROOT/tests/interop/draft_curl.sh" "$2" \
        "$("$VENV/bin/python" "$ROOT/tests/interop/sealpost_api.py" --base-url "$2")" || rc=$?
    stage_result "draft-curl$1" "$rc"
    section "Olm interop (python-olm <-> seal)$1"
    rc=0
    "$VENV/bin/python" "$ROOT/tests/interop/olm_interop.py" --server "$2" \
        --seal "$TARGET_DIR/debug/seal" || rc=$?
    stage_result "olm-interop$1" "$rc"
}
npm ci --prefix "$TUSJS" --no-audit --no-fund --prefer-offline --loglevel=error || TUSJS_DEPS=$?
real_clients "" "$BASE_URL"

# ---------------------------------------------------------------------------------------------
section "tus interop (tuspy) on PostgreSQL + S3 (Garage) + Kafka (tansu)"
[[ -n $PG_URL ]] || start_postgres
[[ -n $GARAGE_PID ]] || start_garage
[[ -n $TANSU_PID ]] || start_tansu
psql_admin "CREATE DATABASE live_s3"
start_sealpost postgres-s3 --data-dir "$WORK/data-s3" \
    --database-url "${PG_URL%/postgres}/live_s3" --bus "kafka://$KAFKA_BROKERS" \
    --blob-store "s3://media?endpoint=http://127.0.0.1:$GARAGE_S3_PORT&region=us-east-1"
S3_SERVER_PID=$STARTED_PID
rc=0
"$VENV/bin/python" "$ROOT/tests/interop/tus_interop.py" --base-url "$STARTED_URL" || rc=$?
stage_result tus-interop-postgres-s3 "$rc"
real_clients -postgres-s3 "$STARTED_URL"
kill -TERM "$S3_SERVER_PID" 2>/dev/null || true
wait "$S3_SERVER_PID" 2>/dev/null || true
S3_SERVER_PID=

# ---------------------------------------------------------------------------------------------
section "schemathesis"
rc=0
mkdir -p "$REPORT_DIR"
seed_args=()
[[ -n ${SCHEMATHESIS_SEED:-} ]] && seed_args=(--seed "$SCHEMATHESIS_SEED")
(
    cd "$WORK" # schemathesis keeps a .schemathesis/ cache in the working directory
    SEALPOST_BASE_URL=$BASE_URL \
    SCHEMATHESIS_HOOKS=$ROOT/tests/interop/schemathesis_hooks.py \
    timeout 900 "$VENV/bin/schemathesis" run "$WORK/openapi.json" \
        --url "$BASE_URL" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
        --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
        --request-timeout 30 \
        --continue-on-failure \
        --generation-database none \
        --no-color \
        --report junit --report-junit-path "$REPORT_DIR/schemathesis.junit.xml" \
        "${seed_args[@]}"
) || rc=$?
stage_result schemathesis "$rc"

# ---------------------------------------------------------------------------------------------
section "stop sealpost"
kill -TERM "$SERVER_PID" 2>/dev/null || true
server_rc=0
wait "$SERVER_PID" || server_rc=$?
SERVER_PID=
echo "sealpost exited with status $server_rc"
if grep -qE 'panicked|ERROR' "$SERVER_LOG"; then
    echo "server log lines with ERROR or panics:"
    grep -E 'panicked|ERROR' "$SERVER_LOG" | head -n 40
fi

# ---------------------------------------------------------------------------------------------
section "Docker image: the build stage replayed (scripts/image.py build)"
# At the same place every run, so that cargo rebuilds only what changed since the last one.
IMAGE=$TARGET_DIR/image-replay
rm -rf "$IMAGE"
rc=0
"$PYTHON" "$ROOT/scripts/image.py" build --work "$IMAGE" || rc=$?
stage_result image-build "$rc"
IMAGE_BUILT=$rc

section "Docker image: the runtime stage against the binaries the build made"
rc=$IMAGE_BUILT
((rc != 0)) || "$PYTHON" "$ROOT/scripts/image.py" runtime --work "$IMAGE" || rc=$?
stage_result image-runtime "$rc"

section "Docker image: the checks refuse a Dockerfile with one breaking edit (tests/stack/image_selftest.py)"
rc=$IMAGE_BUILT
((rc != 0)) || "$PYTHON" "$ROOT/tests/stack/image_selftest.py" --work "$IMAGE" || rc=$?
stage_result image-checks-bite "$rc"

section "the compose stack, natively, through nginx (scripts/stack.sh)"
rc=$IMAGE_BUILT
((rc != 0)) || SEALPOST_BIN=$IMAGE/root/out/sealpost SEAL_BIN=$IMAGE/root/out/seal \
    bash "$ROOT/scripts/stack.sh" || rc=$?
stage_result stack "$rc"

section "summary"
((FAILED == 0)) || echo "failed stages: ${FAILED_STAGES[*]}"
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
