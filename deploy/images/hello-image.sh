#!/usr/bin/env bash
# Builds the `meridian-hello` test images offline (no registry, no base image):
#   meridian-hello:latest     the app (`crates/meridian-hello`), alone in the image
#   meridian-hello:unhealthy  the same, with HELLO_HEALTH=fail (/health answers 500)
#   meridian-hello:v2         the same, with HELLO_VERSION=2 (shown in the / body)
#
# usage: deploy/images/hello-image.sh [--force] [TAG...]
#   TAG is latest, unhealthy or v2 (default: all three). Images already built from the
#   current source are skipped unless --force is given. Honours CARGO_TARGET_DIR.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
target_triple=x86_64-unknown-linux-gnu
force=0
tags=()
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        latest | unhealthy | v2) tags+=("$arg") ;;
        -h | --help)
            sed -n '2,10p' "$0"
            exit 0
            ;;
        *)
            echo "hello-image.sh: unknown tag or flag: $arg (tags: latest unhealthy v2)" >&2
            exit 2
            ;;
    esac
done
if [ ${#tags[@]} -eq 0 ]; then
    tags=(latest unhealthy v2)
fi

# Images carry a digest of the app's source, so a changed app is rebuilt without --force.
source_digest="$(cd "$root" && cat crates/meridian-hello/Cargo.toml crates/meridian-hello/src/*.rs |
    sha256sum | cut -c1-16)"
wanted=()
for tag in "${tags[@]}"; do
    # A missing image has no digest (and is not an error here).
    built_from="$(docker image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' \
        "meridian-hello:$tag" 2>/dev/null | sed -n 's/^HELLO_SOURCE=//p' || true)"
    if [ "$force" -eq 0 ] && [ "$built_from" = "$source_digest" ]; then
        echo "meridian-hello:$tag is up to date (use --force to rebuild)"
    else
        wanted+=("$tag")
    fi
done
if [ ${#wanted[@]} -eq 0 ]; then
    exit 0
fi

# Static glibc binary; `--target` keeps build scripts and proc-macros dynamic.
(
    cd "$root"
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release -p meridian-hello --target "$target_triple"
)
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$root/$target_dir" ;;
esac
binary="$target_dir/$target_triple/release/hello"
if [ ! -x "$binary" ]; then
    echo "hello-image.sh: build produced no binary at $binary" >&2
    exit 1
fi

staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/tmp"
chmod 1777 "$staging/tmp"
cp "$binary" "$staging/hello"
strip "$staging/hello" 2>/dev/null || true
tarball="$staging.tar"
trap 'rm -rf "$staging" "$tarball"' EXIT
tar -C "$staging" --owner=0 --group=0 --numeric-owner -cf "$tarball" hello tmp

for tag in "${wanted[@]}"; do
    changes=(--change 'ENTRYPOINT ["/hello"]' --change 'ENV PORT=8080' --change 'EXPOSE 8080/tcp'
        --change "ENV HELLO_SOURCE=$source_digest")
    case "$tag" in
        unhealthy) changes+=(--change 'ENV HELLO_HEALTH=fail') ;;
        v2) changes+=(--change 'ENV HELLO_VERSION=2') ;;
    esac
    old_id="$(docker image inspect -f '{{.Id}}' "meridian-hello:$tag" 2>/dev/null || true)"
    docker import "${changes[@]}" --message "meridian-hello $tag" - "meridian-hello:$tag" <"$tarball" >/dev/null
    # A rebuild leaves the previous image untagged: drop it unless a container still uses it.
    if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect -f '{{.Id}}' "meridian-hello:$tag")" ]; then
        docker rmi "$old_id" >/dev/null 2>&1 || true
    fi
    echo "built meridian-hello:$tag"
done
