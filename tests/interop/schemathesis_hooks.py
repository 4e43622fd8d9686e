"""Schemathesis hooks for Sealpost (loaded with SCHEMATHESIS_HOOKS=<this file>).

- Authentication: one fresh account per run, logged in through the Ed25519 challenge flow.
  Schemathesis refetches the token on a 401 (its default `retry_on`), so a fuzzed
  `DELETE /v1/auth/token` that revokes the token does not turn the rest of the run into 401s.
- A serializer for `application/offset+octet-stream` (tus PATCH and creation-with-upload
  bodies), which Schemathesis does not know. The schema describes the body as an array of byte
  values; such arrays become those bytes, anything else its JSON text.
- Real test data, so fuzzing gets past 404 and 412: for `/v1/uploads/{id}` the generated id is
  sometimes swapped for a real upload of this account (fresh, partly written, or complete),
  `/v1/blobs/{blob_id}` sometimes gets a real blob id, and upload requests sometimes get
  `Tus-Resumable: 1.0.0` (or the draft's header), a well-formed tus creation, and, for PATCH
  on a real upload, its current `Upload-Offset`. The choices are drawn through Hypothesis
  (reproducible, shrinkable); the uploads are made right before each request (`before_call`)
  and unfinished ones terminated after it, so a fuzzed DELETE or PATCH never spoils another
  case and the account stays under its upload limits.

Needs SEALPOST_BASE_URL (e.g. http://127.0.0.1:8080) in the environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading

import requests
import schemathesis
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sealpost_api import TIMEOUT, Identity  # noqa: E402

BASE_URL = os.environ.get("SEALPOST_BASE_URL", "http://127.0.0.1:8080").rstrip("/")
TUS = {"Tus-Resumable": "1.0.0"}
FIXTURE_LENGTH = 64
PARTIAL_BYTES = 16


class _Account:
    """The run's one account, its current token, and the uploads made for test cases."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._identity: Identity | None = None
        self._token: str | None = None
        self._blob: tuple[str, str] | None = None  # (upload id, blob id) of a finished upload
        self.http = requests.Session()

    def login(self) -> str:
        with self._lock:
            if self._identity is None:
                identity = Identity(BASE_URL)
                identity.register(self.http)
                self._identity = identity
            self._token = self._identity.login(self.http)
            return self._token

    def _auth(self) -> dict[str, str]:
        with self._lock:
            token = self._token or self.login()
        return {"Authorization": f"Bearer {token}", **TUS}

    def _request(self, method: str, path: str, headers: dict, data: bytes | None = None):
        for _ in range(2):
            r = self.http.request(method, BASE_URL + path, headers={**self._auth(), **headers},
                                  data=data, timeout=TIMEOUT)
            if r.status_code != 401:
                return r
            self.login()  # the token was revoked by a fuzzed DELETE /v1/auth/token
        return r

    def new_upload(self, written: int) -> str:
        r = self._request("POST", "/v1/uploads", headers={"Upload-Length": str(FIXTURE_LENGTH)})
        if r.status_code != 201:
            raise RuntimeError(f"fixture upload: {r.status_code} {r.text}")
        upload_url = r.headers["Location"]
        upload_id = upload_url.rstrip("/").rsplit("/", 1)[-1]
        if written:
            r = self._request(
                "PATCH", f"/v1/uploads/{upload_id}", data=os.urandom(written),
                headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
            )
            if r.status_code != 204:
                raise RuntimeError(f"fixture PATCH: {r.status_code} {r.text}")
        return upload_id

    def terminate(self, upload_id: str) -> None:
        self._request("DELETE", f"/v1/uploads/{upload_id}", headers={})

    def finished(self) -> tuple[str, str]:
        """A completed upload and its blob (made once; fuzzing cannot undo a finished upload)."""
        with self._lock:
            if self._blob is None:
                data = os.urandom(FIXTURE_LENGTH)
                upload_id = self.new_upload(0)
                r = self._request(
                    "PATCH", f"/v1/uploads/{upload_id}", data=data,
                    headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
                )
                blob_id = r.headers.get("Sealpost-Blob-Id")
                if r.status_code != 204 or blob_id != hashlib.sha256(data).hexdigest():
                    raise RuntimeError(f"fixture completion: {r.status_code} {dict(r.headers)}")
                self._blob = (upload_id, blob_id)
            return self._blob


ACCOUNT = _Account()


@schemathesis.auth()
class SealpostBearer:
    def get(self, case, context):
        return ACCOUNT.login()

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.serializer("application/offset+octet-stream")
def offset_octet_stream(ctx, value):
    if isinstance(value, bytes):
        return {"data": value}
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return {"data": bytes(v % 256 for v in value)}
    if isinstance(value, str):
        return {"data": value.encode("utf-8", errors="replace")}
    return {"data": json.dumps(value, default=str).encode()}


# Markers put into path parameters by `flatmap_case`, replaced by `before_call`.
FRESH, PARTIAL, COMPLETE, BLOB = "@fresh", "@partial", "@complete", "@blob"
# Unfinished uploads made for a case, terminated after its request (the per-account limit).
_MADE: dict[int, str] = {}
# A header value meaning "the upload's real offset", replaced by `before_call`.
REAL_OFFSET = "@offset"


def _set_protocol(headers, protocol) -> None:
    """Makes the request speak tus or the draft (drops the other protocol's header)."""
    drop = {"tus": ("upload-draft-interop-version",), "draft": ("tus-resumable",)}[protocol]
    for key in [k for k in headers if k.lower() in drop]:
        del headers[key]
    if protocol == "tus":
        headers["Tus-Resumable"] = "1.0.0"
    else:
        headers["Upload-Draft-Interop-Version"] = "8"


def _valid_tus_creation(case, headers) -> None:
    """A well-formed tus creation (possibly with upload): only Tus-Resumable and Upload-Length,
    the length at least the body's, so the 201 and its Location feed the stateful phase."""
    body = case.body if isinstance(case.body, list) else []
    try:
        extra = int(headers.get("Upload-Length")) % 4096
    except (TypeError, ValueError):
        extra = 0
    for key in list(headers):
        if key.lower().startswith("upload-") or key.lower() == "tus-resumable":
            del headers[key]
    headers["Tus-Resumable"] = "1.0.0"
    headers["Upload-Length"] = str(len(body) + extra)


def _apply(case, id_choice, protocol, real_offset):
    path = case.operation.path
    if path == "/v1/uploads/{id}" and id_choice is not None:
        case.path_parameters["id"] = id_choice
    if path == "/v1/blobs/{blob_id}" and id_choice is not None:
        case.path_parameters["blob_id"] = BLOB
    if path.startswith("/v1/uploads"):
        headers = case.headers if case.headers is not None else {}
        if protocol == "tus-valid" and case.method.upper() == "POST":
            _valid_tus_creation(case, headers)
        elif protocol is not None:
            _set_protocol(headers, protocol.removesuffix("-valid"))
        if real_offset and case.method.upper() == "PATCH" and id_choice is not None:
            headers["Upload-Offset"] = REAL_OFFSET
        case.headers = headers
    return case


@schemathesis.hook
def flatmap_case(ctx, case):
    path = ctx.operation.path if ctx.operation is not None else ""
    if not (path.startswith("/v1/uploads") or path == "/v1/blobs/{blob_id}"):
        return st.just(case)
    ids = st.sampled_from([None, FRESH, PARTIAL, COMPLETE]) if "{" in path else st.just(None)
    # None: the headers as generated; tus more often, as tus clients are the common case.
    protocols = st.sampled_from([None, "tus", "tus-valid", "draft"])
    return st.tuples(ids, protocols, st.booleans()).map(lambda t: _apply(case, *t))


def _without_draft_creation(case) -> None:
    """Draft creation requests get a `104 Upload Resumption Supported` before the final
    response. Python's http.client (under requests) takes any 1xx but 100 for the final
    response, so Schemathesis cannot exercise draft creation; tests/uploads_draft.rs covers it
    with a raw HTTP/1.1 client. Such requests are sent as tus requests instead."""
    if case.operation.path == "/v1/uploads" and case.method.upper() == "POST" and case.headers:
        for key in [k for k in case.headers if k.lower() == "upload-draft-interop-version"]:
            del case.headers[key]


@schemathesis.hook
def before_call(ctx, case, kwargs):
    _without_draft_creation(case)
    params = case.path_parameters or {}
    marker = params.get("id") if "id" in params else params.get("blob_id")
    if marker not in (FRESH, PARTIAL, COMPLETE, BLOB):
        return
    if marker == FRESH:
        upload_id, offset = ACCOUNT.new_upload(0), 0
    elif marker == PARTIAL:
        upload_id, offset = ACCOUNT.new_upload(PARTIAL_BYTES), PARTIAL_BYTES
    else:
        upload_id, blob_id = ACCOUNT.finished()
        offset = FIXTURE_LENGTH
    if marker == BLOB:
        case.path_parameters["blob_id"] = blob_id
    else:
        case.path_parameters["id"] = upload_id
    if marker in (FRESH, PARTIAL):
        _MADE[id(case)] = upload_id
    if case.headers and case.headers.get("Upload-Offset") == REAL_OFFSET:
        case.headers["Upload-Offset"] = str(offset)


@schemathesis.hook
def after_call(ctx, case, response):
    upload_id = _MADE.pop(id(case), None)
    if upload_id is not None:
        try:
            ACCOUNT.terminate(upload_id)
        except requests.RequestException:
            pass
