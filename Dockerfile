# fzipd container image: build on Debian 12, run on Debian 12 slim with the
# runtime libraries only, as a non-root user.  With a Docker engine and
# Docker Hub:
#   docker build -t fzipd:0.1.0 .
# Without them (this project's CI machine has neither), scripts/build-image.sh
# builds an equivalent OCI image offline from the local build, and the test
# image.oci checks and runs it.  Both give /usr/local/bin/fzipd and fzip,
# user 65532, entrypoint fzipd, command serve, port 50051, /var/lib/fzip.
# The runtime package list below is checked against the programs' NEEDED
# libraries by image.oci (tests/image/test_image.py).

FROM debian:12 AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      libgrpc-dev protobuf-c-compiler libprotobuf-c-dev protobuf-compiler \
      protobuf-compiler-grpc grpc-proto \
      libzip-dev libmongoc-dev libbson-dev libjwt-dev libsqlite3-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DFZIP_BUILD_TESTS=OFF -DFZIP_BUILD_FUZZ=OFF \
    && cmake --build /build --target fzipd fzip \
    && install -D -m 0755 /build/server/fzipd /out/usr/local/bin/fzipd \
    && install -D -m 0755 /build/client/fzip /out/usr/local/bin/fzip

FROM debian:12-slim
# runtime-packages: libgrpc29 libprotobuf-c1 libzip4 libjwt0 libmongoc-1.0-0 libbson-1.0-0 libsqlite3-0 libssl3 libc6 ca-certificates
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc29 libprotobuf-c1 libzip4 libjwt0 libmongoc-1.0-0 libbson-1.0-0 \
      libsqlite3-0 libssl3 libc6 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 fzip \
    && useradd --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
         --shell /usr/sbin/nologin fzip \
    && install -d -o 65532 -g 65532 -m 0750 /var/lib/fzip
COPY --from=build /out/ /
USER 65532:65532
WORKDIR /var/lib/fzip
ENV FZIP_LISTEN=0.0.0.0:50051 FZIP_STORE=sqlite:/var/lib/fzip/fzip.db
EXPOSE 50051
ENTRYPOINT ["fzipd"]
CMD ["serve"]
