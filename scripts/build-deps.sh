#!/usr/bin/env bash
# The Debian packages building Sealpost needs beside Rust: FFmpeg's development libraries and
# libclang (ffmpeg-next generates its bindings at build time), installed only when missing.
# `make run` and scripts/test.sh call it; as root it installs with apt, otherwise it says what
# to install.
set -euo pipefail
packages=(pkg-config clang libclang-dev libavcodec-dev libavformat-dev libavutil-dev
          libavfilter-dev libavdevice-dev libswscale-dev libswresample-dev "$@")
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$pkg")
done
((${#missing[@]})) || exit 0
if [[ $(id -u) -ne 0 ]]; then
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "installing apt packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
