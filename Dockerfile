# syntax=docker/dockerfile:1
# payledger's image: the release binary on debian:bookworm-slim, run by tini as the unprivileged user
# `payledger` (uid/gid 10001), with its state in the volume /var/lib/payledger.
#
#   docker build -t payledger .                      # compiles the release binary (cargo-chef caches the
#                                                    # dependencies in their own layer)
#   docker build -t payledger --build-arg PAYLEDGER_BINARY_STAGE=prebuilt DIR
#                                                    # no Rust at all: DIR holds a prebuilt `payledger` (a
#                                                    # Linux x86-64 binary built on bookworm's glibc or older);
#                                                    # scripts/image-smoke.sh builds and tests the image so
#
# Either way the last stage, `runtime`, is the image; only where its binary comes from differs. Everything the
# binary serves (migrations, templates, the console's assets, the API docs) is compiled into it, so the runtime
# stage copies nothing else from the sources.

# Which stage's /usr/local/bin/payledger goes into the image: `builder` (compile it here) or `prebuilt` (take it
# from the build context).
ARG PAYLEDGER_BINARY_STAGE=builder

# ---- Rust: dependencies cooked in their own layer, then the workspace ----
# hadolint ignore=DL3049
FROM rust:1.95-bookworm AS chef
# cargo-chef turns the workspace's manifests into a recipe, so the dependency layer changes only with
# Cargo.toml / Cargo.lock and not with every edit of the sources.
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# hadolint ignore=DL3049
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked -p payledger --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p payledger \
    && install -m 0755 target/release/payledger /usr/local/bin/payledger

# ---- A binary built elsewhere (CI's, or scripts/image-smoke.sh's): the build context is its folder ----
# hadolint ignore=DL3049
FROM scratch AS prebuilt
COPY payledger /usr/local/bin/payledger

FROM ${PAYLEDGER_BINARY_STAGE} AS binary

# ---- The image ----
FROM debian:bookworm-slim AS runtime
ARG PAYLEDGER_REVISION=unknown
LABEL org.opencontainers.image.title="payledger" \
      org.opencontainers.image.description="Self-hosted payments ledger service: bank webhooks, user balances and payouts on a double-entry ledger (SQLite or PostgreSQL)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${PAYLEDGER_REVISION}"

# ca-certificates: the HTTP payout gateway and PostgreSQL over TLS verify their peers (rustls reads the system
# roots). tini: PID 1 that forwards SIGTERM to the server and reaps children. Debian's versions are not
# pinned: the security archive replaces them, and a pin would break the build (.hadolint.yaml, DL3008).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid, so a volume's files keep their owner across images and an orchestrator can check
# runAsNonRoot by number.
RUN groupadd --system --gid 10001 payledger \
    && useradd --system --uid 10001 --gid payledger --home-dir /var/lib/payledger --no-create-home \
       --shell /usr/sbin/nologin payledger \
    && install -d -o payledger -g payledger -m 0700 /var/lib/payledger

COPY --from=binary /usr/local/bin/payledger /usr/local/bin/payledger

# The data folder holds the SQLite database (the default: sqlite:///var/lib/payledger/payledger.db, derived
# from PAYLEDGER_DATA_DIR) and the development card key. DATABASE_URL is deliberately not set here: the
# production profile refuses to start on the implicit embedded database, and an image default would hide a
# forgotten DATABASE_URL from that check. Listening on 0.0.0.0 is what a container needs (the binary's own
# default is loopback).
ENV PAYLEDGER_DATA_DIR=/var/lib/payledger \
    PAYLEDGER_BIND=0.0.0.0:8000
VOLUME ["/var/lib/payledger"]
WORKDIR /var/lib/payledger
USER 10001:10001
EXPOSE 8000

# Readiness of the server at PAYLEDGER_BIND (no curl in the image). A `payledger worker` container has no HTTP
# server: compose.yaml turns this check off for it.
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=3 CMD ["payledger", "healthcheck"]

ENTRYPOINT ["tini", "--", "payledger"]
CMD ["serve"]
