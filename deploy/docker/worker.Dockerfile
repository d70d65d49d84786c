# syntax=docker/dockerfile:1
# The saola-worker image on NVIDIA's CUDA runtime base (Ubuntu 24.04, whose abseil 20220623,
# gRPC 1.51 and protobuf 3.21 match the Debian 12 versions CI builds with). The model is not in
# the image: the Helm chart mounts it at /models from a PVC or fetches it in an init container.
# Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t saola-worker:0.1.0 .
# Health: grpc.health.v1 on the gRPC port, SERVING once the model is loaded and NOT_SERVING while
# draining after SIGTERM. Kubernetes probes it natively (deploy/helm/saola); HEALTHCHECK below is
# for plain Docker.

# ---- build: CUDA devel image (nvcc for the CUDA backend) plus the build's Ubuntu packages ----
FROM nvidia/cuda:12.6.3-devel-ubuntu24.04 AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config git ca-certificates \
      libabsl-dev libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc \
      libprotobuf-dev prometheus-cpp-dev libhiredis-dev libfaiss-dev libopenblas-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# SAOLA_CUDA enables the CUDA language for the CUDA backend (kernels/cuda, a later issue).
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSAOLA_BUILD_TESTS=OFF \
      -DSAOLA_CUDA=ON \
 && cmake --build /build --target saola-worker saola -j "$(nproc)"
# The binaries and the shared libraries they load, except glibc and the CUDA libraries, which
# the runtime base provides.
RUN mkdir -p /out/bin /out/lib \
 && cp /build/bin/saola-worker /build/bin/saola /out/bin/ \
 && ldd /out/bin/* | awk '/=> \// {print $3}' | sort -u \
    | grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux-x86-64)\.so|/usr/local/cuda' \
    | xargs -r cp -L -t /out/lib/

# ---- runtime: CUDA runtime libraries, no compiler, a non-root user ----
FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04
RUN groupadd --system --gid 10001 saola \
 && useradd --system --uid 10001 --gid saola --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin saola
COPY --from=build /out/bin/ /opt/saola/bin/
COPY --from=build /out/lib/ /opt/saola/lib/
ENV PATH=/opt/saola/bin:$PATH \
    LD_LIBRARY_PATH=/opt/saola/lib:/usr/local/cuda/lib64 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
# 50051: gRPC (saola.v1.Llm, saola.v1.Worker, health, reflection); 9400: Prometheus /metrics.
EXPOSE 50051 9400
# The start period covers loading a large model.
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
  CMD ["saola", "models", "--target", "127.0.0.1:50051"]
ENTRYPOINT ["saola-worker"]
CMD ["serve", "--model", "/models/model.gguf", "--port", "50051", "--metrics-port", "9400"]
