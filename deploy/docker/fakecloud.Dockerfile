# syntax=docker/dockerfile:1
# fakecloud, the local AWS emulator (S3, STS, KMS, IAM) Coffer's tests use,
# pinned to the version scripts/stack installs. The build takes a while
# (~25 min on 2 cores); the image is small.

FROM rust:1-bookworm AS build
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo install fakecloud --version 0.51.0 --locked --root /out

FROM debian:bookworm-slim
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates libssl3; \
    rm -rf /var/lib/apt/lists/*
COPY --from=build /out/bin/fakecloud /usr/local/bin/fakecloud
EXPOSE 4566
# `fakecloud healthcheck` probes GET /_fakecloud/health on the loopback.
HEALTHCHECK --interval=5s --timeout=5s --start-period=10s --retries=12 \
    CMD ["fakecloud", "healthcheck"]
CMD ["fakecloud", "--addr", "0.0.0.0:4566", "--verify-sigv4", "--iam", "strict"]
