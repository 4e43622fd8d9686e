#!/usr/bin/env python3
"""scripts/image.py must turn CI red for a Dockerfile that would not build or not run: each
case is the shipped Dockerfile with one edit, and the check that must refuse it, saying why.

  image_selftest.py --work DIR   (DIR: the replayed build of the shipped Dockerfile, which the
                                  runtime checks read)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "scripts/image.py"

# (check, text in the Dockerfile, its replacement, what the refusal must say)
CASES = [
    ("build", "COPY benches benches\n", "", "RUN failed"),
    ("build", "RUN bash scripts/build-deps.sh make", "RUN bash scripts/build-deps.sh make || true",
     "|| true"),
    ("runtime", " libavfilter8 ", " ", "does not install"),
    ("runtime", " ca-certificates ", " ca-certificates libavdevice59 ", "nothing links"),
    ("runtime", "USER 10001:10001\n", "", "non-root"),
    ("runtime", "HEALTHCHECK ", "# HEALTHCHECK ", "HEALTHCHECK"),
    ("pins", "debian:12.15-slim", "debian:latest", "not pinned"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, type=Path)
    args = parser.parse_args()
    shipped = (ROOT / "Dockerfile").read_text()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, (check, old, new, said) in enumerate(CASES):
            if shipped.count(old) != 1:
                failures.append(f"case {n}: the Dockerfile no longer has {old!r} once")
                continue
            edited = Path(tmp) / f"Dockerfile.{n}"
            edited.write_text(shipped.replace(old, new))
            work = args.work if check != "build" else Path(tmp) / f"replay.{n}"
            done = subprocess.run(
                [sys.executable, str(IMAGE), check, "--dockerfile", str(edited),
                 *(["--work", str(work)] if check != "pins" else [])],
                capture_output=True, text=True, check=False)
            output = done.stdout + done.stderr
            if done.returncode == 0 or said not in output:
                failures.append(f"{check} with {old.strip()!r} → {new.strip()!r}: exit "
                                f"{done.returncode}, output ends {output[-400:]!r}")
            else:
                print(f"refused, as it must be: {check} with {old.strip()!r} → {new.strip()!r}")
    for failure in failures:
        print(f"NOT REFUSED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
