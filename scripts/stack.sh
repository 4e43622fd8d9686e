#!/usr/bin/env bash
# The compose stack (docker-compose.yml) run natively and driven through nginx: CI's `stack`
# stage (scripts/test.sh), and how to try the deployed shape without Docker.
#
#   cargo build --release --locked -p sealpost -p sealpost-client --bins   # what the image has
#   bash scripts/stack.sh
#
# It starts a throw-away PostgreSQL, Garage (S3, in MinIO's place) and tansu (Kafka), then
# tests/stack/stack.py runs compose's sealpost services (media, chat-1, chat-2, worker) with
# their environment, nginx with deploy/nginx/sealpost.conf and Prometheus with
# deploy/prometheus/, and drives them with the seal CLI through nginx only (see its header for
# every check). Everything lives in a temp dir removed at the end (KEEP=1 keeps it, logs
# included).
#
# Environment: SEALPOST_BIN, SEAL_BIN (default: target/release/{sealpost,seal}).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SEALPOST_BIN=${SEALPOST_BIN:-$TARGET_DIR/release/sealpost}
SEAL_BIN=${SEAL_BIN:-$TARGET_DIR/release/seal}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sealpost-stack.XXXXXX")

# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
cleanup() {
    local rc=$?
    services_stop
    if [[ ${KEEP:-} == 1 ]]; then
        echo "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for bin in "$SEALPOST_BIN" "$SEAL_BIN"; do
    if [[ ! -x $bin ]]; then
        echo "error: $bin is missing: build it with" >&2
        echo "  cargo build --release --locked -p sealpost -p sealpost-client --bins" >&2
        exit 1
    fi
done

find_python
apt_install_missing nginx-light prometheus ffmpeg
ensure_venv

start_postgres
psql_admin "CREATE ROLE sealpost LOGIN PASSWORD 'sealpost'" "CREATE DATABASE sealpost OWNER sealpost"
start_garage
start_tansu

mkdir -p "$WORK/stack"
"$VENV/bin/python" "$ROOT/tests/stack/stack.py" --work "$WORK/stack" \
    --pg-port "$PG_PORT" --s3-port "$GARAGE_S3_PORT" --kafka "$KAFKA_BROKERS" \
    --sealpost "$SEALPOST_BIN" --seal "$SEAL_BIN" \
    --nginx "${SEALPOST_TEST_NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
