#!/usr/bin/env bash
# Pins the base images of image/Dockerfile to the digests their tags point to now.
#
#   scripts/pin-base-images.sh           rewrite NODE_BUILD_IMAGE and RUNTIME_IMAGE in place
#   scripts/pin-base-images.sh --check   exit 1 (and say which) when a pin is not the tag's current digest
#
# For each `ARG *_IMAGE=<repo>:<tag>[@sha256:<digest>]` it asks the registry for the digest of
# <repo>:<tag> as a whole, the multi-platform index (so one pin serves amd64 and arm64 builds), with
# `crane digest` or, without crane, `docker buildx imagetools inspect`. Needs access to docker.io and
# gcr.io. To move to another Node release, edit the tag first, then run this.
# DOCKERFILE overrides the file (default: image/Dockerfile next to this script).
set -euo pipefail

prog="$(basename "$0")"
die() {
  echo "$prog: $*" >&2
  exit 1
}

check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  *) die "usage: $prog [--check]" ;;
esac

dockerfile="${DOCKERFILE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/image/Dockerfile}"
[[ -f "$dockerfile" ]] || die "no Dockerfile at $dockerfile"

digest_of() {
  local ref="$1" out
  if command -v crane >/dev/null 2>&1; then
    out="$(crane digest "$ref")" || die "crane digest $ref failed"
  elif command -v docker >/dev/null 2>&1; then
    out="$(docker buildx imagetools inspect --format '{{.Manifest.Digest}}' "$ref")" || die "docker buildx imagetools inspect $ref failed"
  else
    die "needs crane (github.com/google/go-containerregistry) or docker with buildx"
  fi
  [[ "$out" =~ ^sha256:[0-9a-f]{64}$ ]] || die "unexpected digest for $ref: \"$out\""
  echo "$out"
}

stale=0
tmp="$(mktemp "${TMPDIR:-/tmp}/pin-base-images.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
cp "$dockerfile" "$tmp"
for arg in NODE_BUILD_IMAGE RUNTIME_IMAGE; do
  line="$(grep -E "^ARG $arg=" "$dockerfile" | head -1)" || die "no ARG $arg= in $dockerfile"
  ref="${line#ARG "$arg"=}"
  tagged="${ref%@*}"
  pinned=""
  [[ "$ref" == *@* ]] && pinned="${ref#*@}"
  current="$(digest_of "$tagged")"
  if [[ "$pinned" == "$current" ]]; then
    echo "$prog: $tagged is pinned to its current digest" >&2
    continue
  fi
  stale=1
  echo "$prog: $tagged: ${pinned:-not pinned} -> $current" >&2
  sed -i "s|^ARG $arg=.*$|ARG $arg=$tagged@$current|" "$tmp"
done
if [[ "$check" == true ]]; then
  exit "$stale"
fi
cat "$tmp" >"$dockerfile"
