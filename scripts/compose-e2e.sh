#!/usr/bin/env bash
# End-to-end test of the containers on a real Docker engine, as users run
# them: build both images with Compose, start the stack, fetch the homepage,
# call Recommend on both contracts through the published gRPC port, stop the
# stack with SIGTERM and check that both containers drained and exited 0.
#
# On a machine whose engine cannot reach an image registry (this project's CI
# machines), it first builds local stand-ins under the exact names the
# Dockerfiles use (see docs/containers.md). It always removes what it
# started. Needs root (apt-get, dockerd, debootstrap). Run: scripts/compose-e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[compose-e2e] %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

# One source of truth for the image names: the Dockerfiles themselves.
BUILDER_IMAGE=$(awk '/^FROM .* AS builder/ {print $2; exit}' Dockerfile.recommendations)
RUNTIME_IMAGE=$(awk '/^FROM / {image=$2} END {print image}' Dockerfile.recommendations)
grep -q "^FROM $BUILDER_IMAGE AS builder" Dockerfile.marketplace || fail "Dockerfile.marketplace uses another builder"
grep -q "^FROM $RUNTIME_IMAGE$" Dockerfile.marketplace || fail "Dockerfile.marketplace uses another runtime base"

CACHE=${BOOKSTORE_E2E_CACHE:-/var/tmp/bookstore-e2e}   # kept between runs
SCRATCH=$(mktemp -d)                                     # removed at exit
PROJECT=bookstore-e2e-$$
STARTED_DOCKERD=
COMPOSE=()
mkdir -p "$CACHE"

cleanup() {
    local status=$?
    if [ ${#COMPOSE[@]} -gt 0 ]; then
        log "removing the stack's containers and network"
        "${COMPOSE[@]}" down --remove-orphans --timeout 5 >/dev/null 2>&1 || true
    fi
    if [ -n "$STARTED_DOCKERD" ]; then
        log "stopping the dockerd this script started"
        kill "$STARTED_DOCKERD" 2>/dev/null || true
        wait "$STARTED_DOCKERD" 2>/dev/null || true
    fi
    rm -rf "$SCRATCH"
    exit "$status"
}
trap cleanup EXIT INT TERM

# --- 1. A Docker engine and Compose ------------------------------------------
if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null || ! command -v debootstrap >/dev/null; then
    log "installing docker.io, docker-compose and debootstrap from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose debootstrap >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    dockerd >"$SCRATCH/dockerd.log" 2>&1 &
    STARTED_DOCKERD=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -20 "$SCRATCH/dockerd.log" >&2; fail "dockerd did not start"; }
fi
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose --project-name "$PROJECT")
else
    COMPOSE=(docker-compose --project-name "$PROJECT")
fi
log "engine $(docker version --format '{{.Server.Version}}'); compose: ${COMPOSE[*]:0:2}"

# --- 2. Base images: the real ones, or stand-ins -----------------------------
is_stand_in() { [ "$(docker image inspect --format '{{index .Config.Labels "bookstore.stand-in"}}' "$1" 2>/dev/null)" = true ]; }

pull_real_images() {
    timeout 120 docker pull -q "$BUILDER_IMAGE" >/dev/null 2>&1 \
        && timeout 120 docker pull -q "$RUNTIME_IMAGE" >/dev/null 2>&1
}

build_stand_ins() {
    local rootfs="$CACHE/bookworm-rootfs"
    if [ ! -x "$rootfs/usr/bin/gcc" ]; then
        log "stand-in: debootstrap --variant=minbase bookworm (cached in $rootfs)"
        rm -rf "$rootfs"
        debootstrap --variant=minbase --include=ca-certificates,gcc,libc6-dev \
            bookworm "$rootfs" http://deb.debian.org/debian >"$SCRATCH/debootstrap.log" 2>&1 \
            || { tail -20 "$SCRATCH/debootstrap.log" >&2; fail "debootstrap"; }
    fi

    log "stand-in builder $BUILDER_IMAGE: the Debian base + this machine's Rust toolchain"
    local builder="$SCRATCH/builder"
    cp -a "$rootfs" "$builder"
    # Containers reach the registries through the same TLS-inspecting proxy as
    # this machine: trust the CA certificates added here, as Debian does.
    cp /usr/local/share/ca-certificates/*.crt "$builder/usr/local/share/ca-certificates/" 2>/dev/null || true
    chroot "$builder" update-ca-certificates >/dev/null 2>&1
    local sysroot
    sysroot=$(rustc --print sysroot)
    mkdir -p "$builder/usr/local/cargo"
    tar -C "$sysroot" --exclude=./share/doc -c . | tar -C "$builder/usr/local/cargo" -x
    tar -C "$builder" -c . | docker import \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'LABEL bookstore.stand-in=true' \
        - "$BUILDER_IMAGE" >/dev/null

    log "stand-in runtime $RUNTIME_IMAGE: glibc, libgcc, CA certificates, user nonroot (65532)"
    local runtime="$SCRATCH/runtime"
    mkdir -p "$runtime"/{etc/ssl/certs,usr/lib/x86_64-linux-gnu,usr/lib64,usr/local/bin,home/nonroot,tmp}
    ln -s usr/lib "$runtime/lib"
    ln -s usr/lib64 "$runtime/lib64"
    for lib in libc.so.6 libm.so.6 libgcc_s.so.1 libdl.so.2 libpthread.so.0 librt.so.1 libresolv.so.2 ld-linux-x86-64.so.2; do
        cp -L "$rootfs/usr/lib/x86_64-linux-gnu/$lib" "$runtime/usr/lib/x86_64-linux-gnu/$lib"
    done
    ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$runtime/usr/lib64/ld-linux-x86-64.so.2"
    cp -L "$rootfs/etc/ssl/certs/ca-certificates.crt" "$runtime/etc/ssl/certs/"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$runtime/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$runtime/etc/group"
    printf 'hosts: files dns\n' >"$runtime/etc/nsswitch.conf"
    chmod 1777 "$runtime/tmp"
    chown 65532:65532 "$runtime/home/nonroot"
    tar -C "$runtime" -c . | docker import \
        --change 'USER 65532:65532' \
        --change 'WORKDIR /home/nonroot' \
        --change 'LABEL bookstore.stand-in=true' \
        - "$RUNTIME_IMAGE" >/dev/null
}

if is_stand_in "$BUILDER_IMAGE" && is_stand_in "$RUNTIME_IMAGE"; then
    log "USING STAND-INS from an earlier run for $BUILDER_IMAGE and $RUNTIME_IMAGE"
elif pull_real_images; then
    log "pulled the real $BUILDER_IMAGE and $RUNTIME_IMAGE from their registries"
else
    log "no image registry reachable: BUILDING LOCAL STAND-INS for $BUILDER_IMAGE and $RUNTIME_IMAGE"
    build_stand_ins
fi

# --- 3. Build, start, check ---------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export BOOKSTORE_HTTP_PORT BOOKSTORE_GRPC_PORT
BOOKSTORE_HTTP_PORT=$(free_port)
BOOKSTORE_GRPC_PORT=$(free_port)

log "building the images (log: $SCRATCH/build.log)"
"${COMPOSE[@]}" build >"$SCRATCH/build.log" 2>&1 || { tail -40 "$SCRATCH/build.log" >&2; fail "compose build"; }
# The source layer compiles our crates only, the dependency layer having the same profile, packages
# and features. Read from the classic builder's log (Compose v1's); BuildKit's is not parsed.
if grep -q '^Step .*: RUN find service-kit' "$SCRATCH/build.log"; then
    rebuilt=$(sed 's/\x1b\[[0-9;]*m//g' "$SCRATCH/build.log" \
        | awk '/^Step .*: RUN find service-kit/ {on = 1; next} /^Step / {on = 0} on' \
        | grep -Eo 'Compiling [A-Za-z0-9_-]+ v' | awk '{print $2}' \
        | grep -Evx 'service-kit|recommendations|marketplace' | sort -u | paste -sd ' ' || true)
    [ -z "$rebuilt" ] || fail "the source layer rebuilt dependencies ($rebuilt): see docs/containers.md"
    log "the source layer compiled our crates only"
else
    log "not a classic builder's log: which crates the source layer compiled is not checked"
fi
for service in recommendations marketplace; do
    size=$(docker image inspect --format '{{.Size}}' "bookstore/$service:0.1.0")
    log "image bookstore/$service:0.1.0: $((size / 1000000)) MB"
    [ "$size" -le 60000000 ] || fail "bookstore/$service is larger than 60 MB"
    user=$(docker image inspect --format '{{.Config.User}}' "bookstore/$service:0.1.0")
    [ "$user" = "65532:65532" ] || fail "bookstore/$service runs as '$user', not 65532:65532"
done

# Starts the stack with the compose files in FILES, checks it, stops it.
# $1: a label; GRPCURL_TLS: grpcurl's TLS flags (empty: plaintext);
# SERVICES: the services to start (empty: all); EXTRA_CHECK: a function
# run after the checks, before the stop.
run_stack() {
    local label=$1
    log "$label: starting the stack (homepage on :$BOOKSTORE_HTTP_PORT, gRPC on 127.0.0.1:$BOOKSTORE_GRPC_PORT)"
    "${COMPOSE[@]}" "${FILES[@]}" up -d "${SERVICES[@]}" >"$SCRATCH/up.log" 2>&1 || { cat "$SCRATCH/up.log" >&2; fail "compose up"; }
    for service in recommendations marketplace; do
        for _ in $(seq 90); do
            health=$(docker inspect --format '{{.State.Health.Status}}' "$(container "$service")")
            [ "$health" = healthy ] && break
            sleep 1
        done
        [ "$health" = healthy ] || { "${COMPOSE[@]}" "${FILES[@]}" logs "$service" >&2; fail "$service is $health"; }
        log "$label: $service is healthy"
    done

    homepage=$(curl -fsS "http://127.0.0.1:$BOOKSTORE_HTTP_PORT/")
    grep -q '<title>Online Books For You</title>' <<<"$homepage" || fail "the homepage has no title"
    books=$(grep -o '<li>' <<<"$homepage" | wc -l)
    [ "$books" -eq 3 ] || fail "the homepage lists $books books, not 3"
    log "$label: homepage: title and 3 books"

    # shellcheck disable=SC2086 # GRPCURL_TLS is a list of flags
    grpc() { grpcurl $GRPCURL_TLS -d "$1" "127.0.0.1:$BOOKSTORE_GRPC_PORT" "$2"; }
    legacy=$(grpc '{"user_id": 1, "category": "MYSTERY", "max_results": 3}' Recommendations/Recommend)
    v1=$(grpc '{"user_id": 1, "category": "CATEGORY_MYSTERY", "max_results": 3}' \
        bookstore.recommendations.v1.RecommendationsService/Recommend)
    [ "$(grep -c '"id"' <<<"$legacy")" -eq 3 ] || fail "legacy Recommend: $legacy"
    [ "$(grep -c '"author"' <<<"$v1")" -eq 3 ] || fail "v1 Recommend: $v1"
    log "$label: Recommend through the published port: 3 books on both contracts"
    if [ -n "${GRPCURL_REFUSED:-}" ]; then
        # shellcheck disable=SC2086 # GRPCURL_REFUSED is a list of flags
        if grpcurl $GRPCURL_REFUSED -d '{}' "127.0.0.1:$BOOKSTORE_GRPC_PORT" \
            Recommendations/Recommend >/dev/null 2>&1; then
            fail "a certificate that is no allowed client identity got in"
        fi
        log "$label: the server's own certificate is refused as a client's"
    fi

    if [ -n "${EXTRA_CHECK:-}" ]; then "$EXTRA_CHECK" "$label"; fi

    ids=("$(container recommendations)" "$(container marketplace)")
    log "$label: stopping the stack with SIGTERM"
    "${COMPOSE[@]}" "${FILES[@]}" stop --timeout 30 >/dev/null 2>&1
    for id in "${ids[@]}"; do
        name=$(docker inspect --format '{{.Name}}' "$id")
        code=$(docker inspect --format '{{.State.ExitCode}}' "$id")
        logs=$(docker logs "$id" 2>&1)
        [ "$code" -eq 0 ] || { printf '%s\n' "$logs" >&2; fail "$name exited with $code"; }
        grep -q 'drained' <<<"$logs" || { printf '%s\n' "$logs" >&2; fail "$name did not drain"; }
        log "$label: $name drained and exited 0"
    done
    "${COMPOSE[@]}" "${FILES[@]}" rm -f >/dev/null 2>&1
}
container() { "${COMPOSE[@]}" "${FILES[@]}" ps -q "$1"; }

SERVICES=()
FILES=(-f docker-compose.yaml)
GRPCURL_TLS=-plaintext
run_stack plaintext

# --- 4. The same with mutual TLS (docker-compose.tls.yaml) -------------------
export BOOKSTORE_CERTS="$SCRATCH/certs"
bash scripts/gen-certs.sh "$BOOKSTORE_CERTS" >/dev/null
FILES=(-f docker-compose.yaml -f docker-compose.tls.yaml)
GRPCURL_TLS="-cacert $BOOKSTORE_CERTS/ca.pem -cert $BOOKSTORE_CERTS/marketplace.pem -key $BOOKSTORE_CERTS/marketplace.key"
GRPCURL_REFUSED="-cacert $BOOKSTORE_CERTS/ca.pem -cert $BOOKSTORE_CERTS/recommendations.pem -key $BOOKSTORE_CERTS/recommendations.key"
run_stack "mutual TLS"
unset GRPCURL_REFUSED

# --- 5. With docker-compose.monitoring.yaml: Prometheus scrapes both --------
# The override merges; its Prometheus (a stand-in from Debian's binary when
# no registry answers) scrapes both services and loads every alerting rule.
# Jaeger and Grafana have no stand-in: they are left out here, and the
# services' spans go to a collector that is not there (dropped, as
# designed).
FILES=(-f docker-compose.yaml -f docker-compose.monitoring.yaml)
"${COMPOSE[@]}" "${FILES[@]}" config -q || fail "docker-compose.monitoring.yaml does not merge with docker-compose.yaml"
PROMETHEUS_IMAGE=$(awk '/image: prom\/prometheus:/ {print $2}' docker-compose.monitoring.yaml)
[ -n "$PROMETHEUS_IMAGE" ] || fail "no prom/prometheus image in docker-compose.monitoring.yaml"
if is_stand_in "$PROMETHEUS_IMAGE"; then
    log "USING THE STAND-IN from an earlier run for $PROMETHEUS_IMAGE"
elif timeout 120 docker pull -q "$PROMETHEUS_IMAGE" >/dev/null 2>&1; then
    log "pulled the real $PROMETHEUS_IMAGE"
else
    log "no image registry reachable: BUILDING A LOCAL STAND-IN for $PROMETHEUS_IMAGE from Debian's prometheus"
    if ! command -v prometheus >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    fi
    context="$SCRATCH/prometheus-image"
    mkdir -p "$context/data"
    cp "$(command -v prometheus)" "$context/prometheus"
    # The runtime stand-in (or the real distroless base) has the glibc the
    # Debian binary links; the official image runs as nobody (65534).
    cat >"$context/Dockerfile" <<DOCKERFILE
FROM $RUNTIME_IMAGE
COPY prometheus /bin/prometheus
COPY --chown=65534:65534 data /prometheus
USER 65534:65534
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
LABEL bookstore.stand-in=true
DOCKERFILE
    docker build -q -t "$PROMETHEUS_IMAGE" "$context" >/dev/null || fail "building the Prometheus stand-in"
fi

export BOOKSTORE_PROMETHEUS_PORT
BOOKSTORE_PROMETHEUS_PORT=$(free_port)
# GET the API's $1, with the rest as URL-encoded parameters.
prometheus_api() {
    local path=$1 param args=()
    shift
    for param in "$@"; do args+=(--data-urlencode "$param"); done
    curl -fsS -G "${args[@]}" "http://127.0.0.1:$BOOKSTORE_PROMETHEUS_PORT/api/v1/$path"
}
# The first value of a query's result; nothing while Prometheus is not up
# or the result is empty.
prometheus_value() {
    local answer
    answer=$(prometheus_api query "query=$1" 2>/dev/null) || return 0
    python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' <<<"$answer"
}
check_prometheus() {
    local label=$1 up pages calls rules expected
    for _ in $(seq 60); do
        up=$(prometheus_value 'sum(up{job=~"recommendations|marketplace"})')
        [ "$up" = 2 ] && break
        sleep 1
    done
    [ "$up" = 2 ] || { "${COMPOSE[@]}" "${FILES[@]}" logs prometheus >&2; fail "Prometheus sees $up of 2 targets up"; }
    log "$label: Prometheus scrapes both services (up = 1 each)"
    # The pages fetched above, once scraped (every 5 s).
    for _ in $(seq 30); do
        pages=$(prometheus_value 'sum(http_server_request_duration_seconds_count{job="marketplace",http_route="/"})')
        calls=$(prometheus_value 'sum(rpc_server_call_duration_seconds_count{job="recommendations"})')
        [ "${pages%.*}" -ge 1 ] 2>/dev/null && [ "${calls%.*}" -ge 1 ] 2>/dev/null && break
        sleep 1
    done
    [ "${pages%.*}" -ge 1 ] 2>/dev/null && [ "${calls%.*}" -ge 1 ] 2>/dev/null \
        || fail "Prometheus has ${pages:-no} pages and ${calls:-no} calls"
    log "$label: Prometheus has the homepage ($pages) and the Recommend calls ($calls)"
    expected=$(grep -c -- '- alert:' monitoring/alerts.yaml)
    rules=$(prometheus_api rules | python3 -c 'import json, sys; g = json.load(sys.stdin)["data"]["groups"]; print(sum(r["health"] == "ok" for x in g for r in x["rules"]))')
    [ "$rules" = "$expected" ] || fail "Prometheus evaluates $rules healthy rules, not the $expected of alerts.yaml"
    log "$label: Prometheus evaluates all $rules alerting rules"
}
SERVICES=(recommendations marketplace prometheus)
GRPCURL_TLS=-plaintext
EXTRA_CHECK=check_prometheus
run_stack monitoring
log "PASSED"
