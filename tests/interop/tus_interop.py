#!/usr/bin/env python3
"""Interoperability check: drive a running Sealpost server with tuspy, a tus client we did not
write.

Registers a fresh account (Ed25519 identity key), logs in, then:
  1. uploads a ~3 MiB random file in 1 MiB chunks and downloads the blob back;
  2. uploads part of a file, drops the uploader, checks the server's offset with HEAD, resumes
     with a NEW client and uploader given the upload URL, and downloads the blob back;
  3. uploads with the `sha256` metadata key, given to tuspy's ordinary string metadata as the
     hex or base64 text of the digest, and tuspy's per-chunk `Upload-Checksum` (sha1, the tuspy
     default, and sha256 through a subclass);
  4. checks that a corrupted chunk checksum is refused with 460 and the upload can go on.

Needs: Python 3.9+, `tuspy`, `cryptography`, `requests` (a tuspy dependency).
Usage: tus_interop.py --base-url http://127.0.0.1:8080
Prints one `PASS name` / `FAIL name: why` line per check and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import sys
import traceback
from urllib.parse import urlsplit

import requests
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError, TusUploadFailed
from tusclient.uploader import Uploader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sealpost_api import Identity  # noqa: E402

MIB = 1024 * 1024
TIMEOUT = 60


class Sha256Uploader(Uploader):
    """tuspy's uploader with `Upload-Checksum: sha256 …` instead of its default sha1."""

    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


class Check:
    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: list[str] = []

    def run(self, name: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
            detail = f"{type(e).__name__}: {e}"
            for attr in ("status_code", "response_content"):
                if getattr(e, attr, None) is not None:
                    detail += f" [{attr}={getattr(e, attr)!r}]"
            print(f"FAIL {name}: {detail}", flush=True)
            traceback.print_exc(file=sys.stderr)
            self.failed.append(name)
        else:
            print(f"PASS {name}", flush=True)
            self.passed.append(name)


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


class Session:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.http = requests.Session()
        self.token: str | None = None

    def url(self, path: str) -> str:
        return self.base + path

    def register_and_login(self) -> None:
        ident = Identity(self.base)
        ident.register(self.http)
        self.token = ident.login(self.http)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def tus(self) -> tus_client.TusClient:
        """A fresh tuspy client (each call: nothing shared with earlier uploaders)."""
        return tus_client.TusClient(self.url("/v1/uploads"), headers=dict(self.auth))

    def head(self, upload_url: str) -> requests.Response:
        return self.http.head(
            upload_url, headers={**self.auth, "Tus-Resumable": "1.0.0"}, timeout=TIMEOUT
        )

    def blob(self, blob_id: str) -> bytes:
        r = self.http.get(self.url(f"/v1/blobs/{blob_id}"), headers=self.auth, timeout=TIMEOUT)
        expect(r.status_code == 200, f"GET blob {blob_id}: {r.status_code} {r.text[:300]}")
        return r.content

    def check_complete(self, uploader: Uploader, data: bytes) -> None:
        """The upload is complete, names the right blob, and the blob has the bytes."""
        expect(uploader.offset == len(data), f"uploader offset {uploader.offset} != {len(data)}")
        digest = hashlib.sha256(data).hexdigest()
        r = self.head(uploader.url)
        expect(r.status_code == 200, f"HEAD after completion: {r.status_code}")
        expect(
            r.headers.get("Upload-Offset") == str(len(data)),
            f"HEAD Upload-Offset {r.headers.get('Upload-Offset')!r} != {len(data)}",
        )
        blob_id = r.headers.get("Sealpost-Blob-Id")
        expect(blob_id == digest, f"Sealpost-Blob-Id {blob_id!r} != sha256 {digest}")
        last = uploader.request.response_headers.get("sealpost-blob-id") if uploader.request else None
        expect(last == digest, f"last PATCH Sealpost-Blob-Id {last!r} != {digest}")
        got = self.blob(digest)
        expect(len(got) == len(data), f"blob has {len(got)} bytes, uploaded {len(data)}")
        expect(got == data, "blob bytes differ from the uploaded file")


def chunked_upload(s: Session) -> None:
    data = os.urandom(3 * MIB + 12345)  # 4 chunks, the last one short
    uploader = s.tus().uploader(
        file_stream=io.BytesIO(data),
        chunk_size=MIB,
        metadata={"filename": "chunked.bin", "content_type": "application/octet-stream"},
    )
    uploader.upload()
    expect(uploader.url.startswith(s.base + "/v1/uploads/"), f"upload URL {uploader.url!r}")
    s.check_complete(uploader, data)
    # The JSON status agrees.
    r = s.http.get(uploader.url, headers=s.auth, timeout=TIMEOUT)
    expect(r.status_code == 200, f"GET upload status: {r.status_code} {r.text}")
    st = r.json()
    expect(st.get("blob_id") == hashlib.sha256(data).hexdigest(), f"status blob_id: {st}")
    expect(st.get("filename") == "chunked.bin", f"status filename: {st}")


def interrupted_upload(s: Session) -> None:
    data = os.urandom(3 * MIB + 777)
    first = s.tus().uploader(file_stream=io.BytesIO(data), chunk_size=MIB)
    # Two full chunks, then the process "dies": the uploader is dropped.
    first.upload(stop_at=2 * MIB)
    url = first.url
    expect(first.offset == 2 * MIB, f"first uploader stopped at {first.offset}")
    del first

    r = s.head(url)
    expect(r.status_code == 200, f"HEAD before resuming: {r.status_code}")
    expect(
        r.headers.get("Upload-Offset") == str(2 * MIB),
        f"HEAD Upload-Offset {r.headers.get('Upload-Offset')!r} != {2 * MIB}",
    )
    expect(r.headers.get("Upload-Length") == str(len(data)), f"Upload-Length {r.headers}")
    expect("Sealpost-Blob-Id" not in r.headers, "unfinished upload already has a blob id")
    expect(r.headers.get("Tus-Resumable") == "1.0.0", "HEAD lacks Tus-Resumable: 1.0.0")

    # A new client and a new uploader, given only the URL: tuspy HEADs for the offset itself.
    resumed = s.tus().uploader(file_stream=io.BytesIO(data), url=url, chunk_size=MIB)
    expect(resumed.offset == 2 * MIB, f"resumed uploader starts at {resumed.offset}")
    resumed.upload()
    s.check_complete(resumed, data)


def resume_after_single_chunk(s: Session) -> None:
    """upload_chunk() once with an odd chunk size, resume from a non-chunk-aligned offset."""
    data = os.urandom(2 * MIB + 3)
    first = s.tus().uploader(file_stream=io.BytesIO(data), chunk_size=700_001)
    first.upload_chunk()
    url, offset = first.url, first.offset
    expect(offset == 700_001, f"offset after one chunk {offset}")
    r = s.head(url)
    expect(r.headers.get("Upload-Offset") == str(offset), f"HEAD Upload-Offset {r.headers}")
    resumed = s.tus().uploader(file_stream=io.BytesIO(data), url=url, chunk_size=MIB)
    expect(resumed.offset == offset, f"resumed at {resumed.offset}")
    resumed.upload()
    s.check_complete(resumed, data)


def sha256_metadata_and_checksums(s: Session, uploader_cls: type[Uploader], form: str) -> None:
    """`sha256` declared through tuspy's ordinary string metadata (UTF-8), as text in `form`."""
    data = os.urandom(2 * MIB + 4321)
    uploader = uploader_cls(
        file_stream=io.BytesIO(data),
        client=s.tus(),
        chunk_size=MIB,
        metadata={
            "filename": "checked.bin",
            "kind": "encrypted",
            "sha256": digest_text(data, form),
        },
        upload_checksum=True,
    )
    uploader.upload()
    sent = uploader.request._request_headers.get("upload-checksum", "")
    expect(sent.startswith(uploader.checksum_algorithm_name + " "), f"Upload-Checksum {sent!r}")
    s.check_complete(uploader, data)
    r = s.http.get(uploader.url, headers=s.auth, timeout=TIMEOUT)
    expect(r.json().get("kind") == "encrypted", f"status kind: {r.text}")


def digest_text(data: bytes, form: str) -> str:
    """The SHA-256 of `data` as the text an app would put in string metadata."""
    digest = hashlib.sha256(data)
    return digest.hexdigest() if form == "hex" else base64.b64encode(digest.digest()).decode()


def wrong_sha256_metadata_fails(s: Session) -> None:
    data = os.urandom(MIB + 10)
    uploader = s.tus().uploader(
        file_stream=io.BytesIO(data),
        chunk_size=MIB,
        metadata={"sha256": digest_text(data + b"x", "hex")},
    )
    try:
        uploader.upload()
    except TusUploadFailed as e:
        expect(e.status_code == 460, f"expected 460 for a sha256 mismatch, got {e.status_code}")
    else:
        raise AssertionError("upload with a wrong sha256 metadata value was accepted")
    r = s.http.get(s.url(f"/v1/blobs/{hashlib.sha256(data).hexdigest()}"), headers=s.auth,
                   timeout=TIMEOUT)
    expect(r.status_code == 404, f"blob of a failed upload is served: {r.status_code}")


def bad_chunk_checksum_is_refused(s: Session) -> None:
    data = os.urandom(2 * MIB)

    class Corrupting(Uploader):
        # Right algorithm name, digest of other bytes.
        CHECKSUM_ALGORITHM_PAIR = ("sha1", lambda chunk: hashlib.sha1(chunk + b"!"))

    bad = Corrupting(file_stream=io.BytesIO(data), client=s.tus(), chunk_size=MIB,
                     upload_checksum=True)
    try:
        bad.upload_chunk()
    except TusUploadFailed as e:
        expect(e.status_code == 460, f"expected 460 Checksum Mismatch, got {e.status_code}")
    else:
        raise AssertionError("chunk with a wrong Upload-Checksum was accepted")
    r = s.head(bad.url)
    expect(r.headers.get("Upload-Offset") == "0", f"bytes kept after 460: {r.headers}")
    good = s.tus().uploader(file_stream=io.BytesIO(data), url=bad.url, chunk_size=MIB,
                            upload_checksum=True)
    good.upload()
    s.check_complete(good, data)


def options_advertises_checksum(s: Session) -> None:
    r = s.http.options(s.url("/v1/uploads"), timeout=TIMEOUT)
    expect(r.status_code in (200, 204), f"OPTIONS: {r.status_code}")
    ext = [e.strip() for e in r.headers.get("Tus-Extension", "").split(",")]
    for needed in ("creation", "checksum", "termination"):
        expect(needed in ext, f"Tus-Extension lacks {needed}: {ext}")
    algs = [a.strip() for a in r.headers.get("Tus-Checksum-Algorithm", "").split(",")]
    expect("sha1" in algs and "sha256" in algs, f"Tus-Checksum-Algorithm: {algs}")


def termination(s: Session) -> None:
    data = os.urandom(MIB + 1)
    up = s.tus().uploader(file_stream=io.BytesIO(data), chunk_size=MIB)
    up.upload_chunk()
    r = s.http.delete(up.url, headers={**s.auth, "Tus-Resumable": "1.0.0"}, timeout=TIMEOUT)
    expect(r.status_code == 204, f"DELETE: {r.status_code} {r.text}")
    r = s.head(up.url)
    expect(r.status_code in (404, 410), f"HEAD after DELETE: {r.status_code}")
    try:
        s.tus().uploader(file_stream=io.BytesIO(data), url=up.url)
    except TusCommunicationError:
        pass  # tuspy cannot resume a terminated upload: right
    else:
        raise AssertionError("tuspy resumed a terminated upload")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8080")
    args = p.parse_args()
    parts = urlsplit(args.base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        p.error("--base-url must be an absolute http(s) URL")

    s = Session(args.base_url)
    c = Check()
    c.run("register-and-login", s.register_and_login)
    if c.failed:
        print("tus_interop: 0 passed, 1 failed (cannot log in; nothing else ran)")
        return 1
    c.run("options-advertises-checksum", options_advertises_checksum, s)
    c.run("chunked-upload-3MiB", chunked_upload, s)
    c.run("interrupted-upload-resumed-by-new-client", interrupted_upload, s)
    c.run("resume-from-unaligned-offset", resume_after_single_chunk, s)
    c.run("sha256-hex-metadata-and-sha1-checksum", sha256_metadata_and_checksums, s, Uploader,
          "hex")
    c.run("sha256-base64-metadata-and-sha256-checksum", sha256_metadata_and_checksums, s,
          Sha256Uploader, "base64")
    c.run("wrong-sha256-metadata-fails-460", wrong_sha256_metadata_fails, s)
    c.run("bad-chunk-checksum-refused-460", bad_chunk_checksum_is_refused, s)
    c.run("termination", termination, s)
    print(f"tus_interop: {len(c.passed)} passed, {len(c.failed)} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
