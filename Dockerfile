# Multi-stage build of the sealpost binary into a slim, non-root runtime image.
#   docker build -t sealpost .
#   docker run -p 8080:8080 -v sealpost-data:/var/lib/sealpost sealpost
FROM rust:1.95-slim-bookworm AS build
# FFmpeg headers and libclang: ffmpeg-next generates its bindings at build time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config clang libclang-dev \
       libavcodec-dev libavformat-dev libavutil-dev libavfilter-dev libavdevice-dev \
       libswscale-dev libswresample-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY migrations migrations
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > benches/upload_throughput.rs \
    && cargo build --release --locked --bin sealpost || true
COPY src src
COPY openapi openapi
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin sealpost

FROM debian:bookworm-slim AS runtime
# FFmpeg runtime libraries for the media worker (media-processing issue), CA certificates for S3.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
       libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavfilter8 libavdevice59 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/sealpost --create-home sealpost
COPY --from=build /src/target/release/sealpost /usr/local/bin/sealpost
USER sealpost
WORKDIR /var/lib/sealpost
ENV SEALPOST__LISTEN=0.0.0.0:8080 \
    SEALPOST__DATA_DIR=/var/lib/sealpost \
    SEALPOST__LOG_FORMAT=json
EXPOSE 8080
VOLUME ["/var/lib/sealpost"]
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["sealpost"]
CMD ["serve"]
