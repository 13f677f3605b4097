#!/usr/bin/env bash
# Two clusters, one mesh root: runs setup.sh once per cluster against the same PKI mount. The first run
# creates the mount and its root; the second reuses both and only adds cluster2's auth mount and role.
# Each istiod then gets its own intermediate (L=<cluster>) under the same root, so workloads of both
# clusters trust each other.
#
#   VAULT_ADDR=https://vault.example:8200 VAULT_TOKEN=... \
#   CLUSTER1_CONTEXT=kind-east CLUSTER2_CONTEXT=kind-west ./two-clusters.sh
#
# For each kube context it creates (idempotently) a `vault-token-reviewer` service account bound to
# system:auth-delegator with a long-lived token Secret, so that Vault, running outside the clusters, may
# call TokenReview; it reads the API server URL and CA from your kubeconfig, runs setup.sh, and applies the
# printed ConfigMap in istiod's namespace.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
: "${VAULT_ADDR:?set VAULT_ADDR}"
: "${CLUSTER1_CONTEXT:?set CLUSTER1_CONTEXT (kube context of cluster1)}"
: "${CLUSTER2_CONTEXT:?set CLUSTER2_CONTEXT (kube context of cluster2)}"
PKI_MOUNT="${PKI_MOUNT:-mesh-pki}"
ISTIOD_NAMESPACE="${ISTIOD_NAMESPACE:-istio-system}"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/two-clusters.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

configure() {
  local name="$1" ctx="$2"
  local k=(kubectl --context "$ctx")
  "${k[@]}" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: vault-token-reviewer, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: vault-token-reviewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}
subjects: [{kind: ServiceAccount, name: vault-token-reviewer, namespace: kube-system}]
---
apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: vault-token-reviewer
  namespace: kube-system
  annotations: {kubernetes.io/service-account.name: vault-token-reviewer}
YAML
  local token=""
  for _ in $(seq 1 30); do
    token="$("${k[@]}" -n kube-system get secret vault-token-reviewer -o jsonpath='{.data.token}' 2>/dev/null || true)"
    [[ -n "$token" ]] && break
    sleep 1
  done
  [[ -n "$token" ]] || { echo "$ctx: the token controller did not fill secret kube-system/vault-token-reviewer" >&2; exit 1; }
  base64 -d <<<"$token" >"$tmp/$name-reviewer.jwt"
  local host
  host="$(kubectl config view --raw --minify --context "$ctx" -o jsonpath='{.clusters[0].cluster.server}')"
  kubectl config view --raw --minify --context "$ctx" -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$tmp/$name-ca.pem"

  "$here/../setup.sh" \
    --cluster "$name" \
    --kube-host "$host" \
    --kube-ca-file "$tmp/$name-ca.pem" \
    --token-reviewer-jwt-file "$tmp/$name-reviewer.jwt" \
    --pki-mount "$PKI_MOUNT" \
    --namespace "$ISTIOD_NAMESPACE" >"$tmp/$name-configmap.yaml"
  "${k[@]}" apply -f "$tmp/$name-configmap.yaml"
}

configure cluster1 "$CLUSTER1_CONTEXT"
configure cluster2 "$CLUSTER2_CONTEXT"
echo "both clusters sign under the root of $PKI_MOUNT:" >&2
"${VAULT_BIN:-$(command -v bao || command -v vault)}" read -field=certificate "$PKI_MOUNT/cert/ca" | openssl x509 -noout -subject -fingerprint -sha256 >&2
