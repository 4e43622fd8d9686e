#!/usr/bin/env bash
# The IETF resumable-upload draft at every interop version the server speaks (3 to 9), driven
# by curl, a client that reads 1xx interim responses as HTTP says. Per version:
#   1. optimistic creation: the whole file in one POST, sent slowly and broken off (curl is
#      killed) after the `104 Upload Resumption Supported` came with the upload's Location;
#   2. offset retrieval (HEAD): 204, the offset, and the version's completeness header saying
#      the upload is incomplete (`Upload-Incomplete: ?1` in version 3, `Upload-Complete: ?0`
#      after);
#   3. resumption from that offset with an append that completes the upload: 200, the blob id
#      is the file's SHA-256, and the blob downloads back byte for byte;
#   4. careful creation (empty POST, incomplete), cancellation (DELETE 204), then HEAD 404.
#
# Usage: draft_curl.sh BASE_URL TOKEN
# Prints `PASS vN` / `FAIL vN: why` per version and exits 1 if any failed.
set -uo pipefail

BASE=${1:?usage: draft_curl.sh BASE_URL TOKEN}
TOKEN=${2:?usage: draft_curl.sh BASE_URL TOKEN}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/draft-curl.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
FILE=$WORK/file.bin
head -c 3000000 /dev/urandom >"$FILE"
SHA=$(sha256sum "$FILE" | cut -d' ' -f1)
AUTH="Authorization: Bearer $TOKEN"

fail() { echo "FAIL v$V: $*"; return 1; }
# The value of header $1 in the header dump $2 (last response in it).
header() { tr -d '\r' <"$2" | grep -i "^$1:" | tail -n1 | cut -d' ' -f2-; }
status() { tr -d '\r' <"$1" | grep -E '^HTTP/' | tail -n1 | cut -d' ' -f2; }

one_version() {
    local v=$V complete incomplete typed=() trace=$WORK/v$V.trace pid loc offset hdr body
    if ((v == 3)); then
        complete="Upload-Incomplete: ?0" incomplete="Upload-Incomplete: ?1"
    else
        complete="Upload-Complete: ?1" incomplete="Upload-Complete: ?0"
    fi
    ((v >= 6)) && typed=(-H "Content-Type: application/partial-upload")

    # 1. Optimistic creation, broken off: the whole file, sent slowly, and curl is killed
    #    a second after the 104 came. (A stalled stdin would not do: curl blocked reading it
    #    reads no response either.)
    curl -sS -v -o /dev/null -X POST -T "$FILE" --limit-rate 500K \
        -H "$AUTH" -H "Upload-Draft-Interop-Version: $v" -H "$complete" -H "Expect:" \
        "$BASE/v1/uploads" 2>"$trace" &
    pid=$!
    for _ in $(seq 1 100); do
        grep -q '^< HTTP/1.1 104' "$trace" 2>/dev/null && grep -qi '^< location:' "$trace" && break
        sleep 0.1
    done
    grep -q '^< HTTP/1.1 104 Upload Resumption Supported' "$trace" || {
        kill "$pid" 2>/dev/null; fail "no 104 came: $(grep "^[<*]" "$trace" | tr -d "\r" | tail -n 5 | tr "\n" " ")"; return 1
    }
    grep -qi "^< upload-draft-interop-version: $v" "$trace" || {
        kill "$pid" 2>/dev/null; fail "the 104 does not echo version $v"; return 1
    }
    loc=$(tr -d '\r' <"$trace" | grep -i '^< location:' | head -n1 | cut -d' ' -f3)
    sleep 1 # let some of the body reach the server
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    [[ $loc == http* ]] || loc=$BASE$loc

    # 2. Offset retrieval. The server stops the broken request first, keeping what arrived.
    hdr=$WORK/v$v.head
    curl -sS -I -o "$hdr" -H "$AUTH" -H "Upload-Draft-Interop-Version: $v" "$loc" || {
        fail "HEAD failed"; return 1
    }
    [[ $(status "$hdr") == 204 ]] || { fail "HEAD answered $(status "$hdr")"; return 1; }
    offset=$(header upload-offset "$hdr")
    [[ $offset =~ ^[0-9]+$ ]] && ((offset > 0 && offset < 3000000)) || {
        fail "HEAD offset ${offset:-missing}"; return 1
    }
    [[ $(header "${incomplete%%:*}" "$hdr") == "${incomplete#*: }" ]] || {
        fail "HEAD lacks '$incomplete'"; return 1
    }

    # 3. Resume from the offset and complete.
    hdr=$WORK/v$v.patch body=$WORK/v$v.body
    tail -c +"$((offset + 1))" "$FILE" | curl -sS -o "$body" -D "$hdr" -X PATCH --data-binary @- \
        -H "$AUTH" -H "Upload-Draft-Interop-Version: $v" -H "Upload-Offset: $offset" \
        -H "$complete" "${typed[@]}" "$loc" || { fail "PATCH failed"; return 1; }
    [[ $(status "$hdr") == 200 ]] || { fail "PATCH answered $(status "$hdr"): $(cat "$body")"; return 1; }
    [[ $(header sealpost-blob-id "$hdr") == "$SHA" ]] || {
        fail "blob id $(header sealpost-blob-id "$hdr") is not the file's SHA-256 $SHA"; return 1
    }
    [[ $(curl -sS -H "$AUTH" "$BASE/v1/blobs/$SHA" | sha256sum | cut -d' ' -f1) == "$SHA" ]] || {
        fail "the blob does not download back"; return 1
    }

    # 4. Careful creation, then cancellation.
    hdr=$WORK/v$v.create
    curl -sS -o /dev/null -D "$hdr" -X POST -H "$AUTH" -H "Upload-Draft-Interop-Version: $v" \
        -H "$incomplete" "$BASE/v1/uploads" || { fail "careful creation failed"; return 1; }
    [[ $(status "$hdr") == 201 ]] || { fail "careful creation answered $(status "$hdr")"; return 1; }
    loc=$(header location "$hdr")
    [[ $loc == http* ]] || loc=$BASE$loc
    [[ $(curl -sS -o /dev/null -w '%{http_code}' -X DELETE -H "$AUTH" \
        -H "Upload-Draft-Interop-Version: $v" "$loc") == 204 ]] || { fail "DELETE"; return 1; }
    [[ $(curl -sS -o /dev/null -w '%{http_code}' -I -H "$AUTH" \
        -H "Upload-Draft-Interop-Version: $v" "$loc") == 404 ]] || {
        fail "the cancelled upload is still there"; return 1
    }
    echo "PASS v$v (resumed at $offset of 3000000)"
}

passed=0 failed=0
for V in ${DRAFT_VERSIONS:-3 4 5 6 7 8 9}; do
    if one_version; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "draft_curl: $passed passed, $failed failed"
((failed == 0))
