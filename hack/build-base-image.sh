#!/usr/bin/env bash
# Build a local Debian bookworm base image with Python 3.11, for machines that cannot pull
# python:3.11-slim-bookworm from a registry. Uses debootstrap (minbase) against the Debian mirror
# that this machine's apt uses, then `docker import`s the root filesystem.
#
#   hack/build-base-image.sh            # builds bge-predictor-base:bookworm unless it exists
#   FORCE=1 hack/build-base-image.sh    # rebuild
#
# Environment: BASE_IMAGE_TAG (default bge-predictor-base:bookworm), DEBIAN_MIRROR (default: the
# first http(s) Debian mirror in /etc/apt/sources.list*, else http://deb.debian.org/debian),
# SUITE (default bookworm), FORCE=1 to rebuild. Needs root, debootstrap and docker.
set -euo pipefail

TAG="${BASE_IMAGE_TAG:-bge-predictor-base:bookworm}"
SUITE="${SUITE:-bookworm}"
FORCE="${FORCE:-0}"

log() { printf '[build-base-image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v docker >/dev/null 2>&1 || die "docker is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine reachable (is dockerd running?)"

if [[ "$FORCE" != 1 ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
    log "$TAG already exists; skipping (FORCE=1 rebuilds)"
    exit 0
fi

[[ "$(id -u)" == 0 ]] || die "debootstrap needs root"
if ! command -v debootstrap >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "debootstrap is not installed and apt-get is unavailable"
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >/dev/null \
        || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive \
                apt-get install -y --no-install-recommends debootstrap >/dev/null; } \
        || die "could not install debootstrap"
fi

# The Debian mirror this machine's apt uses (deb822 .sources or one-line .list format).
detect_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        uri="$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) {print $i; exit}}' "$f")"
        [[ -n "$uri" ]] && { echo "${uri%/}"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        uri="$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) {print $i; exit}}' "$f")"
        [[ -n "$uri" ]] && { echo "${uri%/}"; return; }
    done
    echo "http://deb.debian.org/debian"
}
MIRROR="${DEBIAN_MIRROR:-$(detect_mirror)}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}"
log "mirror: $MIRROR (security: $SECURITY_MIRROR), suite: $SUITE, tag: $TAG"

WORK="$(mktemp -d /tmp/bge-base.XXXXXX)"
ROOTFS="$WORK/rootfs"
cleanup() {
    # debootstrap may leave proc/sys mounted if it failed half-way.
    local m
    for m in proc sys dev/pts dev; do
        if mountpoint -q "$ROOTFS/$m" 2>/dev/null; then umount -l "$ROOTFS/$m" || true; fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

start=$SECONDS
log "debootstrap (minbase) ..."
debootstrap --variant=minbase \
    --include=ca-certificates,python3,python3.11,python3.11-venv,python3-venv,python3-pip,tzdata \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 40 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }

cat >"$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES

# Apply bookworm-updates / security fixes when the mirror serves them (best effort).
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf" 2>/dev/null || true
if chroot "$ROOTFS" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -y -qq upgrade' \
        >"$WORK/upgrade.log" 2>&1; then
    log "applied $SUITE-updates/$SUITE-security"
else
    log "WARNING: apt-get upgrade inside the rootfs failed; continuing with the $SUITE release packages"
fi

# Slim down: package caches, lists, docs, man pages, locales other than C.
chroot "$ROOTFS" /bin/sh -c 'apt-get clean' >/dev/null 2>&1 || true
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/log/* \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/tmp/* "$ROOTFS"/root/.cache
: >"$ROOTFS/etc/resolv.conf"
"$ROOTFS/usr/bin/python3.11" --version >/dev/null 2>&1 || chroot "$ROOTFS" python3.11 --version >/dev/null \
    || die "python3.11 is missing from the rootfs"

log "docker import ..."
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debootstrap $SUITE minbase + python3.11 from $MIRROR" \
    - "$TAG" >/dev/null

docker run --rm "$TAG" python3 -c 'import sys, venv, ensurepip; assert sys.version_info[:2] == (3, 11), sys.version' \
    || die "sanity check of $TAG failed"
log "built $TAG in $((SECONDS - start))s ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1 / 1e6}'))"
