# chatgate container image.
#
#   docker build -t chatgate:latest .
#   docker run --rm -p 8080:8080 -e OPENAI_API_KEY=... -e ANTHROPIC_API_KEY=... \
#     -e CHATGATE_FRONTEND_KEY=... chatgate:latest
#
# The image runs the production profile (APP_ENV=production), which refuses to
# start without a client key and the provider keys: see deploy/README.md.
# Run `docker run --rm chatgate:latest check-config` (same env) to see why.

# ---------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------
FROM rust:1-slim-bookworm AS builder
WORKDIR /build

# 1. Dependencies only, in their own layer: this layer is rebuilt when
#    Cargo.toml or Cargo.lock change, not on every source edit. Stub targets
#    stand in for the real ones; the [[bench]] stub stays (cargo checks every
#    declared target exists, but a release build never compiles benches).
COPY Cargo.toml Cargo.lock ./
RUN mkdir src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/hot_path.rs \
 && cargo build --release --locked \
 && rm -rf src

# 2. The real sources. Remove the stub's artefacts and fingerprints so cargo
#    cannot mistake them for the real crate (COPY keeps the files' mtimes,
#    which may be older than the stub build).
COPY src ./src
RUN rm -rf target/release/chatgate* target/release/libchatgate* \
        target/release/deps/chatgate-* target/release/deps/libchatgate-* \
        target/release/.fingerprint/chatgate-* \
 && touch src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && install -D -m 0755 target/release/chatgate /out/chatgate

# ---------------------------------------------------------------------------
# Runtime stage: glibc, the binary and its config, nothing else. reqwest uses
# rustls with bundled web PKI roots, so neither OpenSSL nor ca-certificates is
# needed; there is deliberately no curl or wget (the healthcheck is built in).
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# Fixed, non-root ids, matched by runAsUser/runAsGroup in deploy/k8s.
# /app/data is the one writable folder, e.g. for the interaction log
# (CHATGATE_INTERACTION_LOG__PATH=/app/data/interactions.jsonl).
RUN groupadd --system --gid 10001 chatgate \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin chatgate \
 && mkdir -p /app/data \
 && chown 10001:10001 /app/data

COPY --from=builder /out/chatgate /usr/local/bin/chatgate
# Config layers (default.toml, production.toml, ...) stay root-owned: read-only
# for the service.
COPY config /app/config

WORKDIR /app
ENV APP_ENV=production

USER 10001:10001
EXPOSE 8080

# `chatgate healthcheck` exits 0 when the local /health answers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["chatgate", "healthcheck"]

# SIGTERM: /health/ready turns 503, in-flight requests get shutdown_grace (30s)
# to finish. Give containers at least 40s to stop (docker stop -t 40,
# stop_grace_period, terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["chatgate"]
