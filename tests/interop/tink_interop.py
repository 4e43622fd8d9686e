#!/usr/bin/env python3
"""Interop between sealpost's sealed-media format and Google Tink (Python) in both directions.

  open-vectors DIR   Tink opens every ciphertext that sealpost sealed in DIR (vectors.json:
                     key, length; <name>.bin: ciphertext) and checks the plaintext.
  seal DIR OUT       Tink seals a plaintext of each vector's length under that vector's key
                     into OUT/<name>.tink.bin (Tink picks its own salt and nonce prefix), for
                     sealpost's test to open (crates/crypto/tests/tink.rs).
  time-seal FILE     Seals FILE to /dev/null under an all-zero key and prints the seconds it
                     took (the sealing benchmark, crates/crypto/benches/seal_throughput.rs).

The key is a Tink AesGcmHkdfStreamingKey: HKDF-SHA256, 32-byte derived key, 65536-byte
ciphertext segments; associated data b"sealpost-media-v1".
"""

import io
import json
import pathlib
import sys
import time

import tink
from tink import cleartext_keyset_handle, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2

ASSOCIATED_DATA = b"sealpost-media-v1"


def plaintext(length):
    """The vectors' plaintext: byte i is (31 * i + 7) mod 251."""
    return bytes((31 * i + 7) % 251 for i in range(length))


def primitive(key):
    params = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingParams(
        ciphertext_segment_size=65536, derived_key_size=32, hkdf_hash_type=common_pb2.SHA256
    )
    material = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(
        version=0, params=params, key_value=key
    )
    keyset = tink_pb2.Keyset(
        primary_key_id=1,
        key=[
            tink_pb2.Keyset.Key(
                key_data=tink_pb2.KeyData(
                    type_url="type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey",
                    value=material.SerializeToString(),
                    key_material_type=tink_pb2.KeyData.SYMMETRIC,
                ),
                status=tink_pb2.ENABLED,
                key_id=1,
                output_prefix_type=tink_pb2.RAW,
            )
        ],
    )
    handle = cleartext_keyset_handle.from_keyset(keyset)
    return handle.primitive(streaming_aead.StreamingAead)


def vectors(directory):
    return json.loads((directory / "vectors.json").read_text())["vectors"]


def open_vectors(directory):
    failures = 0
    for v in vectors(directory):
        ciphertext = (directory / f"{v['name']}.bin").read_bytes()
        try:
            with primitive(bytes.fromhex(v["key"])).new_decrypting_stream(
                io.BytesIO(ciphertext), ASSOCIATED_DATA
            ) as stream:
                opened = stream.read()
        except tink.TinkError as e:
            print(f"FAIL {v['name']}: Tink cannot open sealpost's ciphertext: {e}")
            failures += 1
            continue
        if opened != plaintext(v["length"]):
            print(f"FAIL {v['name']}: Tink opened {len(opened)} bytes, not the plaintext")
            failures += 1
        else:
            print(f"ok   {v['name']}: Tink opens sealpost's {len(ciphertext)}-byte ciphertext")
    return failures


def seal(source, target):
    target.mkdir(parents=True, exist_ok=True)
    for v in vectors(source):
        # Tink's stream closes the file it writes to when it is closed.
        out = open(target / f"{v['name']}.tink.bin", "wb")  # noqa: SIM115
        with primitive(bytes.fromhex(v["key"])).new_encrypting_stream(
            out, ASSOCIATED_DATA
        ) as stream:
            stream.write(plaintext(v["length"]))
        print(f"ok   {v['name']}: Tink sealed {v['length']} bytes")
    return 0


def time_seal(path):
    sealer = primitive(bytes(32))
    start = time.perf_counter()
    with open(path, "rb") as src, open("/dev/null", "wb") as dst:
        with sealer.new_encrypting_stream(dst, ASSOCIATED_DATA) as stream:
            while chunk := src.read(1 << 20):
                stream.write(chunk)
    print(time.perf_counter() - start)


def main():
    streaming_aead.register()
    if len(sys.argv) == 3 and sys.argv[1] == "time-seal":
        time_seal(sys.argv[2])
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "open-vectors":
        failures = open_vectors(pathlib.Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "seal":
        failures = seal(pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]))
    else:
        print(__doc__)
        return 2
    print(f"{failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
