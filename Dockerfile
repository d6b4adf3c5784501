# fzipd container image: built on Debian 12, shipped on an empty base with
# exactly the files fzipd needs (scripts/image-rootfs.sh: the two programs,
# the shared libraries they load, the CA bundle, the IANA zoneinfo files,
# user 65532).  No shell, no package manager.  With a Docker engine and
# Docker Hub:
#   docker build -t fzipd:0.1.0 .
# Without them (this project's CI machine has neither), scripts/build-image.sh
# builds the same image offline from a local build with the same
# image-rootfs.sh; the test image.oci checks, runs and compares the two
# (its config below must equal build-image.sh's).

FROM debian:12 AS build
# golang-go: CMake fetches the SQLite amalgamation through the Go module
# proxy (scripts/fetch-sqlite.sh).
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config ca-certificates \
      libgrpc-dev protobuf-c-compiler libprotobuf-c-dev protobuf-compiler \
      protobuf-compiler-grpc grpc-proto \
      libzip-dev libmongoc-dev libbson-dev libjwt-dev libssl-dev liblzma-dev \
      libmicrohttpd-dev libsodium-dev tzdata \
      golang-go \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DFZIP_BUILD_TESTS=OFF -DFZIP_BUILD_FUZZ=OFF \
    && cmake --build /build --target fzipd fzip \
    && scripts/image-rootfs.sh /build /rootfs

FROM scratch
COPY --from=build /rootfs/ /
# COPY sets owners to 0: the data directory goes again with its owner.
COPY --from=build --chown=65532:65532 /rootfs/var/lib/fzip /var/lib/fzip
USER 65532:65532
WORKDIR /var/lib/fzip
# MONGOC_DISABLE_SHM: the driver would otherwise keep debugging counters in
# /dev/shm (nothing in the image reads them; see docs/DEPLOY.md).
ENV PATH=/usr/local/bin MONGOC_DISABLE_SHM=1 FZIP_LISTEN=0.0.0.0:50051 FZIP_STORE=sqlite:/var/lib/fzip/fzip.db
EXPOSE 50051/tcp
ENTRYPOINT ["fzipd"]
CMD ["serve"]
