#!/usr/bin/env bash
# Builds and finds the Go binaries the tests run (real istiod, istioctl, the workload stand-in,
# kube-apiserver, etcd), from the small modules under tools/ and the Go module proxy.
#
#   scripts/go-tools.sh build <tool>...   build what is missing, print each binary's path
#   scripts/go-tools.sh path <tool>...    print each binary's path; exit 1 if one is not built
#   scripts/go-tools.sh list              print the tool names
#
# Binaries are cached outside the repo, one folder per tool and source version:
#   ${IVA_TOOLS_CACHE:-$HOME/.cache/istiod-vault-agent/go-tools}/<tool>-<hash>/<tool>
# where <hash> covers the tool module's go.mod, go.sum and Go sources (and BUILD_RECIPE below), so a
# new pin or a changed main builds a new binary and an unchanged one is reused (the first istio build
# takes ~15 min on 2 cores). Nothing here needs Go to answer `path`.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${IVA_TOOLS_CACHE:-$HOME/.cache/istiod-vault-agent/go-tools}"
# Bump when the build command below changes in a way that changes the binaries.
BUILD_RECIPE=2

# tool -> module folder under tools/ (the main is <module>/cmd/<tool>).
module_of() {
  case "$1" in
    pilot-discovery|istioctl|workload) echo istio ;;
    kube-apiserver|etcd) echo kube ;;
    *) echo "go-tools: unknown tool '$1' (known: $(list | tr '\n' ' '))" >&2; return 2 ;;
  esac
}
list() { printf '%s\n' pilot-discovery istioctl workload kube-apiserver etcd; }

# Version stamps, as each project's own build sets them (Istio: $(cat VERSION)-dev and the commit, from its
# Makefile.core.mk and common/scripts/report_build_info.sh; Kubernetes: hack/lib/version.sh), so that istiod's
# istio_build metric, `istioctl version` and the API server's /version say what they are.
ldflags_of() {
  local dir="$root/tools/$1" v src
  case "$1" in
    istio)
      v="$(cd "$dir" && go list -m -f '{{.Version}}' istio.io/istio)"
      src="$(cd "$dir" && go list -m -f '{{.Dir}}' istio.io/istio)"
      printf -- '-X istio.io/istio/pkg/version.%s ' "buildVersion=$(cat "$src/VERSION")-dev" "buildGitRevision=${v##*-}" "buildTag=$v" buildStatus=Clean
      ;;
    kube)
      v="$(cd "$dir" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
      local minor="${v#v*.}"
      minor="${minor%%.*}"
      printf -- '-X k8s.io/component-base/version.%s ' "gitVersion=$v" gitMajor=1 "gitMinor=$minor" gitTreeState=clean
      ;;
  esac
}

source_hash() {
  local dir="$root/tools/$1"
  (
    cd "$dir"
    echo "recipe $BUILD_RECIPE"
    find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  ) | sha256sum | cut -c1-16
}

bin_path() {
  local tool="$1" module
  module="$(module_of "$tool")"
  echo "$cache/$tool-$(source_hash "$module")/$tool"
}

build_one() {
  local tool="$1" module bin dir tmp started
  module="$(module_of "$tool")"
  bin="$(bin_path "$tool")"
  if [ -x "$bin" ]; then echo "$bin"; return; fi
  command -v go >/dev/null || { echo "go-tools: building $tool needs the Go toolchain (go) on PATH" >&2; return 1; }
  dir="$(dirname "$bin")"
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.build-$tool-XXXXXX")"
  chmod 755 "$tmp"
  started=$(date +%s)
  echo "go-tools: building $tool from tools/$module (first build of a new version takes minutes)" >&2
  # -mod=readonly: the build never rewrites the committed go.mod/go.sum (that would change the hash under
  # a running build); a module that needs an update fails with "go mod tidy" in the message; no VCS stamp
  # (the binary depends on the sources hashed, not on the commit). -trimpath: the
  # binary does not depend on where the repo or the module cache is; -s -w: no symbol table or DWARF (a third
  # of the size; panics still name functions). -p: one compile per core, more only adds memory pressure.
  if ! (cd "$root/tools/$module" && GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 go build -p "${GO_TOOLS_JOBS:-$(nproc)}" -trimpath -ldflags="-s -w $(ldflags_of "$module")" -o "$tmp/$tool" "./cmd/$tool"); then
    rm -rf "$tmp"
    echo "go-tools: building $tool failed" >&2
    return 1
  fi
  printf '{"tool":"%s","module":"tools/%s","go":"%s","seconds":%d,"built":"%s"}\n' \
    "$tool" "$module" "$(go env GOVERSION)" "$(( $(date +%s) - started ))" "$(date -u +%FT%TZ)" > "$tmp/build.json"
  # Publish the folder in one rename; a concurrent build of the same version that won keeps its own.
  mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
  echo "go-tools: built $tool in $(( $(date +%s) - started ))s" >&2
  echo "$bin"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  list) list ;;
  path)
    [ $# -gt 0 ] || { echo "usage: $0 path <tool>..." >&2; exit 2; }
    status=0
    for t in "$@"; do
      bin="$(bin_path "$t")"
      if [ -x "$bin" ]; then echo "$bin"; else echo "go-tools: $t is not built (run: scripts/go-tools.sh build $t)" >&2; status=1; fi
    done
    exit "$status"
    ;;
  build)
    [ $# -gt 0 ] || { echo "usage: $0 build <tool>... (tools: $(list | tr '\n' ' '))" >&2; exit 2; }
    for t in "$@"; do build_one "$t"; done
    ;;
  *) echo "usage: $0 build|path <tool>... | list" >&2; exit 2 ;;
esac
