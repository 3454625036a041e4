#!/usr/bin/env bash
# Build a minimal Debian image with Debian's Python 3.11 from Debian's packages alone
# (debootstrap), and store it in buildah's local storage under the name given.
# It stands in for the Dockerfile's public bases where no registry can be pulled from.
# Kept: what the runtime needs (python3, ca-certificates) and what the build stages use
# (python3-venv, apt, useradd); left out: documentation, man pages, locales, apt lists.
# The standard library's bytecode stays: on a read-only root nothing could write it, and
# every start would compile what it imports.
#
#   images/debian-base.sh localhost/kubeinfer-base:bookworm
set -euo pipefail

name=${1:?usage: debian-base.sh IMAGE-NAME}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if buildah inspect --type image "$name" >/dev/null 2>&1; then
    echo "base $name: present"
    exit 0
fi

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/kubeinfer-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
echo "base $name: debootstrap $suite from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -20 "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"

# Later apt-get installs in images built FROM this one leave documentation out too.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-kubeinfer-nodoc" <<'CFG'
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
CFG
rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

container=$(buildah from scratch)
mountpoint=$(buildah mount "$container")
cp -a "$rootfs"/. "$mountpoint"/
buildah umount "$container" >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd '["python3"]' \
    --label org.opencontainers.image.description="Debian $suite (minbase) with Debian's python3, from debootstrap" \
    "$container"
buildah commit --quiet --rm "$container" "$name" >/dev/null
echo "base $name: built"
