# beamline-mesh: one static-ish binary (rustls, protox; no OpenSSL, no protoc) on a small
# non-root runtime image. Not built in CI (no Docker engine there); the Helm charts use it.
#
#   docker build -t beamline-mesh:0.1.0 .
#   docker run --rm beamline-mesh:0.1.0 --help

# --- build ---------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# The workspace: the root package (the binary) and its members under crates/. Cargo reads every
# member's manifest and every declared bench and example, so all of them are copied.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY crates ./crates
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin beamline-mesh \
    && install -D -m 0755 target/release/beamline-mesh /out/beamline-mesh

# --- run -----------------------------------------------------------------------------------
# distroless/cc: glibc and libgcc only, no shell, user 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/beamline-mesh /usr/local/bin/beamline-mesh
USER 65532:65532
# gateway 8080, agent 9000, registry 8500, metrics 9090 (all set by flags).
EXPOSE 8080 9000 8500 9090
ENTRYPOINT ["beamline-mesh"]
CMD ["--help"]
