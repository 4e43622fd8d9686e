"""Registration and login against a Sealpost server (shared by the interop scripts).

Accounts are identified by an Ed25519 identity key: the client asks for a challenge and signs
its base64-decoded bytes. Needs `requests` and `cryptography`.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

TIMEOUT = 60


def random_phone() -> str:
    """A random E.164 number, so reruns against one data directory do not collide."""
    return "+49151" + "".join(str(secrets.randbelow(10)) for _ in range(8))


@dataclass
class Identity:
    base_url: str
    phone: str = field(default_factory=random_phone)
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    def _url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def register(self, http: requests.Session | None = None) -> dict:
        http = http or requests.Session()
        public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        r = http.post(
            self._url("/v1/accounts"),
            json={
                "phone": self.phone,
                "name": "interop",
                "identity_key": base64.b64encode(public).decode(),
            },
            timeout=TIMEOUT,
        )
        if r.status_code != 201:
            raise RuntimeError(f"register: {r.status_code} {r.text}")
        return r.json()

    def login(self, http: requests.Session | None = None) -> str:
        """A fresh bearer token (challenge, then the signed challenge)."""
        http = http or requests.Session()
        r = http.post(self._url("/v1/auth/challenge"), json={"phone": self.phone}, timeout=TIMEOUT)
        if r.status_code != 200:
            raise RuntimeError(f"challenge: {r.status_code} {r.text}")
        challenge = r.json()["challenge"]
        signature = self.key.sign(base64.b64decode(challenge))
        r = http.post(
            self._url("/v1/auth/token"),
            json={
                "phone": self.phone,
                "challenge": challenge,
                "signature": base64.b64encode(signature).decode(),
            },
            timeout=TIMEOUT,
        )
        if r.status_code != 200:
            raise RuntimeError(f"token: {r.status_code} {r.text}")
        token = r.json().get("token")
        if not token:
            raise RuntimeError(f"token response without a token: {r.text}")
        return token


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="Register a fresh account and print a bearer token.")
    p.add_argument("--base-url", required=True)
    args = p.parse_args()
    ident = Identity(args.base_url)
    ident.register()
    print(ident.login())
