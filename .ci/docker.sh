#!/usr/bin/env bash
# CI: make sure a Docker engine runs, build the local Debian base image, then build the predictor
# image (CPU torch) as bge-predictor:ci with this machine's pip configuration.
#
# This machine reaches no image registry, so the base image is built locally with debootstrap
# (hack/build-base-image.sh). Python packages: see step 3.
#
# Environment: IMAGE (default bge-predictor:ci), BASE_IMAGE (default bge-predictor-base:bookworm),
# TORCH_VARIANT (only cpu), WHEELHOUSE (default ~/.cache/bge-predictor/wheelhouse),
# PIP_MIRROR_PORT (default 38457; fixed so that build args, and with them the layer cache, stay
# the same between runs), DOCKERD_LOG (default /tmp/bge-dockerd.log).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-bge-predictor:ci}"
BASE_IMAGE="${BASE_IMAGE:-bge-predictor-base:bookworm}"
TORCH_VARIANT="${TORCH_VARIANT:-cpu}"
PIP_MIRROR_PORT="${PIP_MIRROR_PORT:-38457}"
DOCKERD_LOG="${DOCKERD_LOG:-/tmp/bge-dockerd.log}"

log() { printf '[ci/docker] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

START=$SECONDS

# ---------------------------------------------------------------------------------------------
# 1. A Docker engine.
apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 \
        || { apt-get update >/dev/null 2>&1 \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null; }
}

wait_for_docker() {  # $1: seconds, $2: pid of the dockerd we started
    local deadline=$((SECONDS + $1))
    while ((SECONDS < deadline)); do
        docker info >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 1
    done
    return 1
}

start_dockerd() {  # extra dockerd flags as arguments; prints nothing, returns 0 once up
    log "starting dockerd${*:+ $*} (log: $DOCKERD_LOG)"
    # setsid + nohup: the daemon outlives this script (the image test runs afterwards).
    setsid nohup dockerd "$@" >>"$DOCKERD_LOG" 2>&1 </dev/null &
    local pid=$!
    if wait_for_docker 60 "$pid"; then
        return 0
    fi
    log "dockerd $* did not come up; last log lines:"
    tail -n 15 "$DOCKERD_LOG" >&2 || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f /var/run/docker.pid
    return 1
}

ensure_docker() {
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        log "Docker engine already running"
        return
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        [[ "$(id -u)" == 0 ]] || die "no Docker engine and not root: cannot install docker.io"
        log "installing docker.io"
        apt_install docker.io iptables || die "could not install docker.io with apt-get"
    fi
    command -v docker >/dev/null 2>&1 || die "docker client missing after installing docker.io"
    [[ "$(id -u)" == 0 ]] || die "dockerd is installed but not running, and starting it needs root"
    # Fall back to settings that work in restricted sandboxes (no iptables, no overlayfs).
    start_dockerd \
        || start_dockerd --iptables=false \
        || start_dockerd --iptables=false --ip-masq=false --storage-driver=vfs \
        || die "could not start dockerd (see $DOCKERD_LOG)"
    log "Docker engine up: $(docker info --format '{{.ServerVersion}} {{.Driver}}')"
}

ensure_docker

# ---------------------------------------------------------------------------------------------
# 2. Base image.
if [[ "$BASE_IMAGE" == bge-predictor-base:* ]]; then
    BASE_IMAGE_TAG="$BASE_IMAGE" "$ROOT/hack/build-base-image.sh"
else
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || docker pull "$BASE_IMAGE"
fi
log "base image ready after $((SECONDS - START))s"

# ---------------------------------------------------------------------------------------------
# 3. Wheels, resolved with this machine's pip configuration, served to the build.
#
# This machine's pip configuration (pip config list: local indexes under /opt, a find-links
# directory with the CPU torch wheel, a CA bundle for the HTTPS egress) only works on the host.
# So the host's pip builds a wheelhouse (all of the image's Python dependencies, kept between
# runs), which is served over HTTP on 127.0.0.1 during the build; the build runs with
# --network host and PIP_NO_INDEX=1 PIP_FIND_LINKS=<that URL>. The image's pip thus installs
# exactly what the host's pip resolved, and the Dockerfile stays plain.
PY="$(command -v python3 || true)"
[[ -n "$PY" ]] || die "python3 is needed to build the wheelhouse"
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "python3 must be Python 3.11 (the image's Python) to resolve wheels: $("$PY" --version)"
[[ "$TORCH_VARIANT" == cpu ]] || die "this script builds the cpu variant only (TORCH_VARIANT=$TORCH_VARIANT)"

WHEELHOUSE="${WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/bge-predictor/wheelhouse}"
mkdir -p "$WHEELHOUSE"
REQS="$(mktemp /tmp/bge-reqs.XXXXXX)"
HTTP_PID=""
cleanup() {
    if [[ -n "$HTTP_PID" ]]; then
        kill "$HTTP_PID" 2>/dev/null || true
        wait "$HTTP_PID" 2>/dev/null || true
    fi
    rm -f "$REQS"
}
trap cleanup EXIT

"$PY" - "$ROOT/pyproject.toml" >"$REQS" <<'PYEOF'
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)
print("\n".join(["pip", "setuptools>=68", "wheel", "torch", *project["project"]["dependencies"]]))
PYEOF
# Re-resolve only when the requirements, constraints or Python change (FORCE_WHEELS=1: always).
STAMP="$(cat "$REQS" "$ROOT/constraints.txt" <("$PY" -VV) | sha256sum | cut -d' ' -f1)"
if [[ "${FORCE_WHEELS:-0}" != 1 && -f "$WHEELHOUSE/.stamp" && "$(cat "$WHEELHOUSE/.stamp")" == "$STAMP" ]]; then
    log "wheelhouse $WHEELHOUSE is up to date"
else
    log "resolving wheels into $WHEELHOUSE"
    wheel_start=$SECONDS
    rm -f "$WHEELHOUSE/.stamp"
    "$PY" -m pip wheel --quiet --prefer-binary --find-links "$WHEELHOUSE" --wheel-dir "$WHEELHOUSE" \
        -c "$ROOT/constraints.txt" -r "$REQS" || die "pip wheel failed"
    echo "$STAMP" >"$WHEELHOUSE/.stamp"
    log "wheelhouse ready in $((SECONDS - wheel_start))s ($(du -sh "$WHEELHOUSE" | cut -f1))"
fi

"$PY" -m http.server --bind 127.0.0.1 --directory "$WHEELHOUSE" "$PIP_MIRROR_PORT" \
    >/tmp/bge-pip-mirror.log 2>&1 &
HTTP_PID=$!
for _ in $(seq 50); do
    "$PY" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "http://127.0.0.1:$PIP_MIRROR_PORT/" >/dev/null 2>&1 && break
    kill -0 "$HTTP_PID" 2>/dev/null || die "local wheel server failed (port $PIP_MIRROR_PORT busy?)"
    sleep 0.2
done
BUILD_ARGS=(
    --build-arg "BASE_IMAGE=$BASE_IMAGE"
    --build-arg "TORCH_VARIANT=$TORCH_VARIANT"
    --build-arg "TORCH_CPU_INDEX_URL="
    --build-arg "PIP_NO_INDEX=1"
    --build-arg "PIP_FIND_LINKS=http://127.0.0.1:$PIP_MIRROR_PORT/"
    --build-arg "PIP_TRUSTED_HOST=127.0.0.1"
)

# ---------------------------------------------------------------------------------------------
# 4. The image. The classic builder is used explicitly: it needs no buildx plugin, and
# --network host (to reach the local mirror) needs no BuildKit entitlement.
REVISION="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
log "building $IMAGE (TORCH_VARIANT=$TORCH_VARIANT, BASE_IMAGE=$BASE_IMAGE)"
build_start=$SECONDS
DOCKER_BUILDKIT=0 docker build --force-rm --network host "${BUILD_ARGS[@]}" \
    --build-arg "REVISION=$REVISION" -t "$IMAGE" "$ROOT" \
    || die "docker build failed"
log "built $IMAGE in $((SECONDS - build_start))s"

# Smoke: the entry point starts and parses its arguments.
docker run --rm "$IMAGE" --help >/dev/null || die "'docker run $IMAGE --help' failed"
log "docker run $IMAGE --help: ok"
log "done in $((SECONDS - START))s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}'))"
