#!/usr/bin/env bash
# Helm post-renderer for istiod-vault-agent.
#
# Reads the rendered istiod chart on stdin, applies one of the kustomize components in
# manifests/kustomize (classic or native) with `kubectl kustomize`, and writes the result on stdout.
#
#   helm upgrade --install istiod istio/istiod -n istio-system \
#     -f manifests/helm/values-postrenderer.yaml \
#     --post-renderer ./manifests/helm/post-renderer.sh [--post-renderer-args native]
#
# Settings (environment, or the first argument for the variant):
#   IVA_VARIANT        classic (default): init container + sidecar; native: restartable init container
#                      (Kubernetes >= 1.29).
#   IVA_IMAGE          image reference for the agent, e.g. registry.example/istiod-vault-agent:0.1.0 or
#                      ...@sha256:<digest> (default: the component's istiod-vault-agent:<version>).
#   IVA_PLATFORM       empty (default), or openshift: no fixed runAsUser/runAsGroup in the agent's
#                      containers (the platform assigns one UID to the whole pod). Or the second argument.
#   IVA_KUSTOMIZE_DIR  folder holding common/, classic/, native/, openshift/ (default: ../kustomize beside
#                      this script).
#   KUBECTL            kubectl binary (default: kubectl; `kustomize build` is used when kubectl is absent).
#   IVA_AGENT_CLI      command that runs the agent's CLI, used for `check-manifest -` on the result
#                      (default: istiod-vault-agent on PATH, else node on the repository's dist bundle;
#                      e.g. "docker run -i --rm registry.example/istiod-vault-agent:0.1.0").
#   IVA_CHECK          off: skip that check (not recommended).
#
# Exits non-zero with a message on stderr when kustomize fails, the input holds no Deployment labelled
# app=istiod, or the patched manifest fails `check-manifest`; nothing is written on stdout then, and no
# temporary file is left behind.
set -euo pipefail

prog="istiod-vault-agent post-renderer"
die() {
  echo "$prog: $*" >&2
  exit 1
}

variant="${1:-${IVA_VARIANT:-classic}}"
case "$variant" in
  classic | native) ;;
  *) die "IVA_VARIANT must be classic or native (got \"$variant\")" ;;
esac
platform="${2:-${IVA_PLATFORM:-}}"
case "$platform" in
  "") component="$variant" ;;
  openshift) component="openshift/$variant" ;;
  *) die "IVA_PLATFORM must be empty or openshift (got \"$platform\")" ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
kdir="${IVA_KUSTOMIZE_DIR:-$here/../kustomize}"
for part in common "$variant" "$component"; do
  [[ -f "$kdir/$part/kustomization.yaml" ]] || die "no kustomize component at $kdir/$part (set IVA_KUSTOMIZE_DIR)"
done

# The agent's CLI, for check-manifest on the result.
check=()
if [[ "${IVA_CHECK:-}" != off ]]; then
  if [[ -n "${IVA_AGENT_CLI:-}" ]]; then
    read -r -a check <<<"$IVA_AGENT_CLI"
  elif command -v istiod-vault-agent >/dev/null 2>&1; then
    check=(istiod-vault-agent)
  elif [[ -f "$here/../../dist/istiod-vault-agent.mjs" ]] && command -v node >/dev/null 2>&1; then
    check=(node "$here/../../dist/istiod-vault-agent.mjs")
  else
    die "cannot check the patched manifest: put istiod-vault-agent on PATH, set IVA_AGENT_CLI to a command that runs it (e.g. \"docker run -i --rm <agent image>\"), or IVA_CHECK=off to skip the check"
  fi
fi

if command -v "${KUBECTL:-kubectl}" >/dev/null 2>&1; then
  build=("${KUBECTL:-kubectl}" kustomize)
elif command -v kustomize >/dev/null 2>&1; then
  build=(kustomize build)
else
  die "neither kubectl (KUBECTL=${KUBECTL:-kubectl}) nor kustomize found on PATH"
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/istiod-vault-agent-post-render.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

cat >"$tmp/rendered.yaml"
[[ -s "$tmp/rendered.yaml" ]] || die "empty input: expected the rendered istiod chart on stdin"
if grep -q 'istiod-vault-agent-token' "$tmp/rendered.yaml"; then
  die "the input already contains istiod-vault-agent (values-native-sidecar.yaml together with the post-renderer, or applied twice?)"
fi

# kustomize refuses absolute component paths and paths outside the build root: copy the components in.
mkdir "$tmp/components"
cp -R "$kdir/common" "$kdir/$variant" "$tmp/components/"
if [[ "$component" != "$variant" ]]; then
  mkdir -p "$tmp/components/$(dirname "$component")"
  cp -R "$kdir/$component" "$tmp/components/$component"
fi

images=""
if [[ -n "${IVA_IMAGE:-}" ]]; then
  ref="$IVA_IMAGE"
  digest=""
  tag=""
  if [[ "$ref" == *@* ]]; then
    digest="${ref#*@}"
    ref="${ref%%@*}"
  fi
  # A tag is a colon after the last slash (a colon before it is a registry port).
  if [[ "${ref##*/}" == *:* ]]; then
    tag="${ref##*:}"
    ref="${ref%:*}"
  fi
  images=$'images:\n  - name: istiod-vault-agent\n    newName: '"$ref"
  [[ -n "$tag" ]] && images+=$'\n    newTag: "'"$tag"'"'
  [[ -n "$digest" ]] && images+=$'\n    digest: '"$digest"
fi

cat >"$tmp/kustomization.yaml" <<KUST
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - rendered.yaml
components:
  - components/$component
$images
KUST

if ! "${build[@]}" "$tmp" >"$tmp/patched.yaml" 2>"$tmp/stderr"; then
  cat "$tmp/stderr" >&2
  die "${build[*]} failed on the rendered chart (variant $variant)"
fi
# kustomize silently skips a patch whose target matches nothing: check that istiod was actually patched.
if ! grep -q 'istiod-vault-agent-token' "$tmp/patched.yaml"; then
  die "no Deployment labelled app=istiod in the input: nothing to patch (is this the istiod chart?)"
fi
# The same check as `helm template ... | istiod-vault-agent check-manifest -` in CI: never hand Helm an
# istiod that could fall back to its self-signed CA.
if [[ ${#check[@]} -gt 0 ]]; then
  if ! "${check[@]}" check-manifest - <"$tmp/patched.yaml" >"$tmp/check.out" 2>&1; then
    cat "$tmp/check.out" >&2
    die "the patched manifest fails istiod-vault-agent check-manifest (see above); nothing was rendered"
  fi
fi
cat "$tmp/patched.yaml"
