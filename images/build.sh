#!/usr/bin/env bash
# Build the Dockerfile's targets and print each image's size; `make images` runs it.
#
# With buildah (the default where it is installed) no registry and no engine is needed:
# the bases are made here from Debian's packages (images/debian-base.sh) unless
# BASES=public, which builds from the Dockerfile's own public bases. With docker or
# podman (ENGINE=docker|podman) the public bases are used. Layers are cached, and pip's
# downloads are kept in the builder's cache mount between builds.
#
#   images/build.sh [TARGET...]        # operator server server-cuda
#   images/build.sh --names [TARGET...]  # print "TARGET IMAGE" lines, build nothing
#
# Environment: REGISTRY (ghcr.io/kubeinfer), TAG (the chart's appVersion), ENGINE,
# BASES (local|public), TORCH_CUDA_INDEX (pip index of server-cuda's torch; empty: the
# Dockerfile's), BUILD_CA_BUNDLE (a CA bundle pip in the build trusts, for a proxy with
# its own CA), PUSH=1 to push each image once built.
set -euo pipefail
cd "$(dirname "$0")/.."

names_only=
if [ "${1:-}" = --names ]; then names_only=1; shift; fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(operator server server-cuda)
registry=${REGISTRY:-ghcr.io/kubeinfer}
tag=${TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/kubeinfer/Chart.yaml)}
engine=${ENGINE:-}
if [ -z "$engine" ]; then
    for engine in buildah podman docker; do command -v "$engine" >/dev/null && break; done
fi
bases=${BASES:-$([ "$engine" = buildah ] && echo local || echo public)}
# Named by the script that makes it: a changed script makes a new base.
local_base=localhost/kubeinfer-base:bookworm-$(sha256sum images/debian-base.sh | cut -c1-12)

image_name() {  # target -> repository name, as the chart's values name them
    case $1 in
        operator) echo "$registry/kubeinfer:$tag" ;;
        server) echo "$registry/kubeinfer-server:$tag" ;;
        server-cuda) echo "$registry/kubeinfer-server-cuda:$tag" ;;
        *) echo "unknown target $1 (operator, server, server-cuda)" >&2; return 1 ;;
    esac
}

if [ -n "$names_only" ]; then
    for target in "${targets[@]}"; do echo "$target $(image_name "$target")"; done
    exit 0
fi

args=()
if [ "$bases" = local ]; then
    [ "$engine" = buildah ] || { echo "BASES=local needs buildah" >&2; exit 2; }
    images/debian-base.sh "$local_base"
    args+=(--build-arg "PYTHON_IMAGE=$local_base" --build-arg "CUDA_IMAGE=$local_base")
fi
[ -z "${TORCH_CUDA_INDEX:-}" ] || args+=(--build-arg "TORCH_CUDA_INDEX=$TORCH_CUDA_INDEX")
if [ -n "${BUILD_CA_BUNDLE:-}" ]; then
    [ "$engine" != docker ] || { echo "BUILD_CA_BUNDLE needs buildah or podman" >&2; exit 2; }
    conf=$(mktemp "${TMPDIR:-/tmp}/kubeinfer-pip.XXXXXX.conf")
    trap 'rm -f "$conf"' EXIT
    printf '[global]\ncert = /run/kubeinfer-build-ca.crt\n' >"$conf"
    args+=(--volume "$(realpath "$BUILD_CA_BUNDLE"):/run/kubeinfer-build-ca.crt:ro" --volume "$conf:/etc/pip.conf:ro")
fi
case $engine in
    buildah) build=(buildah build --layers --isolation chroot) ;;
    podman) build=(podman build --layers) ;;
    *) build=(docker build) ;;
esac

sizes=()
for target in "${targets[@]}"; do
    name=$(image_name "$target")
    echo "== $target -> $name"
    started=$SECONDS
    "${build[@]}" "${args[@]}" --target "$target" --tag "$name" .
    if [ "$engine" = docker ]; then
        size="$(( $(docker image inspect --format '{{.Size}}' "$name") / 1000000 )) MB"
    else
        size=$("$engine" images --format '{{.Size}}' "$name" | head -1)
    fi
    sizes+=("$(printf '%-12s %-50s %8s  (built in %ds)' "$target" "$name" "$size" $((SECONDS - started)))")
    if [ "${PUSH:-}" = 1 ]; then
        "$engine" push "$name"
    fi
done
echo
echo "images (uncompressed size):"
printf '  %s\n' "${sizes[@]}"
