# syntax=docker/dockerfile:1.7
# The sealpost image: the `sealpost` server (every role) and the `seal` CLI, on Debian 12 with
# the FFmpeg 5.1 libraries they link, running as a non-root user.
#   docker build -t sealpost:0.1.0 .
#   docker run -p 8080:8080 -v sealpost-data:/var/lib/sealpost sealpost:0.1.0
#   docker run --rm --entrypoint seal sealpost:0.1.0 --help
#
# CI has no Docker engine: scripts/image.py replays the build stage (the same COPY lines after
# .dockerignore, the same RUN lines, with this machine's Rust, which must be the one pinned
# here) and checks the runtime stage's packages against what the built binaries link. Keep
# the lines to forms it knows; it refuses any other, so a broken image turns CI red.

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
# FFmpeg's headers and libclang (ffmpeg-next generates its bindings at build time), the same
# list `make run` installs, and make, which librdkafka's bundled build runs.
COPY scripts/build-deps.sh scripts/build-deps.sh
RUN bash scripts/build-deps.sh make && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY benches benches
COPY crates crates
COPY migrations migrations
COPY src src
# Cargo's registry and target directory are cache mounts: a rebuild after a source edit
# compiles only the workspace's own crates.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sealpost -p sealpost-client --bins \
    && mkdir -p /out && cp target/release/sealpost target/release/seal /out/

FROM debian:12.15-slim AS runtime
# Exactly the shared libraries the binaries link (CI compares this list with `ldd`), and the
# trust store for S3 and HTTPS. prlimit, which the media worker runs, is in every Debian image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
       libavcodec59 libavfilter8 libavformat59 libavutil57 libswresample4 libswscale6 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/sealpost --create-home sealpost
COPY --from=build /out/sealpost /out/seal /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/sealpost
ENV SEALPOST__LISTEN=0.0.0.0:8080 \
    SEALPOST__DATA_DIR=/var/lib/sealpost \
    SEALPOST__LOG_FORMAT=json
EXPOSE 8080
VOLUME ["/var/lib/sealpost"]
# `sealpost ready` asks this process's own /readyz (database, blob store and bus answer).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["sealpost", "ready"]
ENTRYPOINT ["sealpost"]
CMD ["serve"]
