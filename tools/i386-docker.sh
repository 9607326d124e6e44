# shellcheck shell=bash
# tools/i386-docker.sh - the Docker back end of tools/i386.sh, which sources it
# (it defines functions and settings only; it uses the helpers defined there).
#
# The image is docker/Dockerfile.i386 built on BASE: the Dockerfile's default
# (ARG BASE) or $ARENA_I386_BASE. A BASE that is not here and cannot be pulled
# (no registry reachable) is made here: an i386 bookworm minbase root made
# with debootstrap from the host's Debian mirror, with the host's network
# settings, written as a docker-archive (`docker save` format) whose image
# config says architecture 386, and loaded under BASE's name. (`docker import`
# would record the host's amd64, and the Dockerfile's linux/386 pin would then
# ignore the image and try to pull.)

readonly DOCKERFILE=docker/Dockerfile.i386
BASE="${ARENA_I386_BASE:-$(sed -n 's/^ARG BASE=//p' "$REPO/$DOCKERFILE")}"
readonly BASE
# Where the build context carries the host's network settings (the
# Dockerfile copies this tree over / when it is there).
readonly HOST_ROOT_IN_CONTEXT=docker/host-root

docker_available() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

# A directory removed when the script exits, however it exits; its path in
# the variable named $1.
TEMP_DIRS=()
make_temp_dir() {
    local -n into="$1"
    into=$(mktemp -d "${TMPDIR:-/var/tmp}/arena-i386.XXXXXX")
    TEMP_DIRS+=("$into")
    trap 'rm -rf --one-file-system "${TEMP_DIRS[@]}"' EXIT
}

# The architecture of image $1 here, empty when there is no such image.
image_arch() {
    docker image inspect -f '{{.Architecture}}' "$1" 2>/dev/null || true
}

# One base image made at a time: a run that waited finds it made.
lock_base() {
    exec 8>"${TMPDIR:-/var/tmp}/arena-i386-docker-base.lock"
    flock 8
}

# BASE as an i386 image here: already loaded, else pulled, else made here.
ensure_base() {
    local arch
    lock_base
    arch=$(image_arch "$BASE")
    if [[ "$arch" == 386 ]]; then
        log "base image $BASE is here"
        return
    fi
    # An amd64 image under this name (docker import makes those) would make
    # the build pull; a pulled or made one replaces it.
    [[ -n "$arch" ]] && log "base image $BASE here is $arch, not 386: replacing it"
    log "pulling $BASE (linux/386)"
    if timeout 600 docker pull --platform linux/386 "$BASE" && [[ $(image_arch "$BASE") == 386 ]]; then
        return
    fi
    log "cannot pull $BASE: making it here without a registry (tools/i386.sh docker-base)"
    build_docker_base "$BASE"
}

# Make an i386 bookworm minbase image and load it as $1.
build_docker_base() {
    local name="$1" dir start=$SECONDS layer_id config_id created
    require_root docker-base
    make_temp_dir dir
    debootstrap_i386 "$dir/rootfs"
    write_host_settings "$dir/rootfs"
    # What an image has no use for: apt's lists and downloaded packages, and
    # the device nodes debootstrap made (a container gets its own /dev).
    rm -rf "$dir"/rootfs/var/lib/apt/lists/* "$dir"/rootfs/var/cache/apt/archives/*.deb \
        "$dir"/rootfs/dev/*
    # One layer, the whole root, owners as numbers (the root's users, not the host's).
    tar -C "$dir/rootfs" --numeric-owner --xattrs -cf "$dir/layer.tar" .
    rm -rf --one-file-system "$dir/rootfs"
    layer_id=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)
    created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    # The image config: architecture 386 is what lets FROM --platform=linux/386 use it.
    printf '%s' "{\"architecture\":\"386\",\"os\":\"linux\",\"created\":\"$created\",\
\"config\":{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],\"Cmd\":[\"bash\"]},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$layer_id\"]},\
\"history\":[{\"created\":\"$created\",\"created_by\":\"tools/i386.sh docker-base: debootstrap --arch=i386 --variant=minbase $SUITE $(host_mirror)\"}]}" \
        >"$dir/config.json"
    config_id=$(sha256sum "$dir/config.json" | cut -d' ' -f1)
    mv "$dir/config.json" "$dir/$config_id.json"
    printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' \
        "$config_id" "$name" >"$dir/manifest.json"
    tar -C "$dir" -cf - manifest.json "$config_id.json" layer.tar | docker load
    [[ $(image_arch "$name") == 386 ]] || die 1 "docker load did not give an i386 image $name"
    log "base image $name made and loaded in $((SECONDS - start)) s"
}

# Build the image from a context of the project's sources and the host's
# network settings. IMAGE_ID is what was built: runs name it, not the tag,
# which a build from another checkout on this machine may take meanwhile.
# IMAGE_HAS_HOST_CA says whether the settings had a CA bundle.
IMAGE_ID=
IMAGE_HAS_HOST_CA=
build_image() {
    local ctx args=() extra=() v start=$SECONDS
    make_temp_dir ctx
    source_tar >"$ctx/context.tar"
    write_host_settings "$ctx/$HOST_ROOT_IN_CONTEXT"
    [[ -f "$ctx/$HOST_ROOT_IN_CONTEXT$CA_IN_ROOT" ]] && IMAGE_HAS_HOST_CA=yes
    tar -C "$ctx" -rf "$ctx/context.tar" "$HOST_ROOT_IN_CONTEXT"
    # Docker's predefined proxy arguments: set only where the host has them.
    for v in "${PROXY_VARS[@]}"; do
        [[ -n "${!v+x}" ]] && args+=(--build-arg "$v")
    done
    read -r -a extra <<<"${ARENA_DOCKER_BUILD_FLAGS:-}"
    log "building $IMAGE from $DOCKERFILE on $BASE"
    docker build --platform linux/386 --build-arg "BASE=$BASE" "${args[@]}" "${extra[@]}" \
        --iidfile "$ctx/image-id" -f "$DOCKERFILE" -t "$IMAGE" - <"$ctx/context.tar"
    IMAGE_ID=$(cat "$ctx/image-id")
    log "image $IMAGE ($IMAGE_ID) built in $((SECONDS - start)) s"
}

# docker_main MODE CMD...: run CMD in a fresh container of the image.
docker_main() {
    local mode="$1" run=(--rm --platform linux/386) extra=() env=() names=() results rc=0 v
    shift
    ensure_base
    build_image
    read -r -a extra <<<"${ARENA_DOCKER_RUN_FLAGS:-}"
    [[ -t 0 && -t 1 ]] && run+=(-it)
    # The image holds all a test or bench run needs: prove it by giving it no
    # network, unless the caller's flags choose one.
    if [[ "$mode" == test || "$mode" == bench ]] && [[ " ${extra[*]} " != *" --net"* ]]; then
        run+=(--network none)
    fi
    if [[ "$mode" == bench ]]; then
        make_temp_dir results
        run+=(-v "$results:/src/arena/benchmarks/results")
    fi
    mapfile -d '' env < <(passed_env "$IMAGE_HAS_HOST_CA")
    for v in "${env[@]}"; do names+=("${v%%=*}"); done
    # Variables by name only: a proxy URL may hold a password.
    log "docker run ${run[*]} ${extra[*]:+${extra[*]} }$IMAGE_ID $* (passing: ${names[*]:-nothing})"
    for v in "${env[@]}"; do run+=(-e "$v"); done
    docker run "${run[@]}" "${extra[@]}" "$IMAGE_ID" "$@" || rc=$?
    [[ "$mode" == bench ]] && keep_bench_results "$results"
    exit "$rc"
}
