#!/usr/bin/env bash
# Configures Vault or OpenBao for istiod-vault-agent, for one cluster. Idempotent: run it again (or for
# the next cluster) and it reuses what exists; it never regenerates or replaces an existing root.
#
# What it does, in order:
#   1. enables the root PKI mount (or reuses it) and sets its max lease TTL;
#   2. imports the root from a PEM bundle (--root-bundle) or generates one, only if the mount has none;
#   3. writes two least-privilege policies: <policy> (sign intermediates at the mount, read its CA) and
#      <policy>-token (the login token's own lookup/renew/revoke);
#   4. enables kubernetes auth at a per-cluster mount (default kube-<cluster>-mesh-auth), points it at the
#      cluster's API server and CA, and writes a role bound to istiod's service account (audience vault);
#      then turns on auto-tidy of the PKI mount's certificate store (PKI_TIDY_SAFETY_BUFFER, default 72h;
#      PKI_TIDY_INTERVAL, default 12h), which every issuance adds an intermediate to;
#   5. prints a ConfigMap with the agent's settings on stdout (progress goes to stderr).
#
# Needs: the `bao` or `vault` CLI (VAULT_BIN overrides), VAULT_ADDR and a token allowed to manage mounts,
# policies and auth methods (VAULT_TOKEN or the CLI's token helper). Run with --help for the options.
set -euo pipefail

prog="$(basename "$0")"

usage() {
  cat <<USAGE
Usage: $prog --cluster NAME --kube-host URL [--kube-ca-file FILE] [options]

Per cluster (flag, or the environment variable in brackets):
  --cluster NAME              cluster name; goes into CLUSTER_NAME and the default auth mount [CLUSTER_NAME]
  --kube-host URL             the cluster's API server as Vault reaches it, for TokenReview [KUBE_HOST]
  --kube-ca-file FILE         PEM CA of that API server [KUBE_CA_FILE]
  --token-reviewer-jwt-file FILE
                              JWT Vault sends with TokenReview calls: a long-lived token of a service
                              account bound to system:auth-delegator [TOKEN_REVIEWER_JWT_FILE]. Without it
                              Vault uses istiod's own token, which the API server rejects unless its
                              audience is the API server's: give one when Vault runs outside the cluster.
  --vault-in-cluster          Vault runs in this very cluster: use its pod's own CA and token instead of
                              --kube-ca-file/--token-reviewer-jwt-file
  --auth-mount PATH           default kube-<cluster>-mesh-auth [AUTH_MOUNT]
  --role NAME                 default istiod [AUTH_ROLE]
  --namespace NS              istiod's namespace, default istio-system [ISTIOD_NAMESPACE]
  --service-account NAME      istiod's service account, default istiod [ISTIOD_SERVICE_ACCOUNT]
                              (revisioned control planes use istiod-<rev>; comma-separate several)
  --audience AUD              audience of the projected token, default vault [TOKEN_AUDIENCE]
  --token-ttl DUR             lifetime of the agent's Vault token, default 1h [TOKEN_TTL]

Shared by all clusters (the same values on every run):
  --pki-mount PATH            root PKI mount, default mesh-pki [PKI_MOUNT]
  --root-bundle FILE          PEM bundle (certificate + unencrypted key) to import as the root, instead of
                              generating one; ignored when the mount already holds this root, refused when
                              it holds another one [ROOT_BUNDLE]
  --root-common-name CN       CN of a generated root, default "Mesh Root CA" [ROOT_COMMON_NAME]
  --root-key-type rsa|ec      key of a generated root, default rsa (4096 bits; ec: P-384) [ROOT_KEY_TYPE]
  --root-ttl DUR              lifetime of a generated root, default 87600h [ROOT_TTL]
  --max-ttl DUR               the mount's max lease TTL (caps intermediates), default 87600h [PKI_MAX_TTL]
  --issuer-name NAME          name of the generated/imported issuer, default mesh-root [ISSUER_NAME]
  --policy NAME               default istiod-vault-agent-<mount> [POLICY_NAME]

Printed settings:
  --agent-vault-addr URL      VAULT_ADDR the agent should use, default \$VAULT_ADDR [AGENT_VAULT_ADDR]
  --cert-ttl DUR              CERT_TTL for the agent, default 720h [CERT_TTL]
  --configmap-name NAME       default istiod-vault-agent [CONFIGMAP_NAME]

Environment: VAULT_BIN (default: bao, then vault, on PATH), VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT ...;
PKI_TIDY_SAFETY_BUFFER (default 72h) and PKI_TIDY_INTERVAL (default 12h) for the mount's auto-tidy.
USAGE
}

die() {
  echo "$prog: $*" >&2
  exit 1
}
say() { echo "$prog: $*" >&2; }

cluster="${CLUSTER_NAME:-}"
kube_host="${KUBE_HOST:-}"
kube_ca_file="${KUBE_CA_FILE:-}"
reviewer_jwt_file="${TOKEN_REVIEWER_JWT_FILE:-}"
vault_in_cluster=false
auth_mount="${AUTH_MOUNT:-}"
role="${AUTH_ROLE:-istiod}"
namespace="${ISTIOD_NAMESPACE:-istio-system}"
service_account="${ISTIOD_SERVICE_ACCOUNT:-istiod}"
audience="${TOKEN_AUDIENCE:-vault}"
token_ttl="${TOKEN_TTL:-1h}"
pki_mount="${PKI_MOUNT:-mesh-pki}"
root_bundle="${ROOT_BUNDLE:-}"
root_cn="${ROOT_COMMON_NAME:-Mesh Root CA}"
root_key_type="${ROOT_KEY_TYPE:-rsa}"
root_ttl="${ROOT_TTL:-87600h}"
max_ttl="${PKI_MAX_TTL:-87600h}"
issuer_name="${ISSUER_NAME:-mesh-root}"
policy="${POLICY_NAME:-}"
agent_vault_addr="${AGENT_VAULT_ADDR:-}"
cert_ttl="${CERT_TTL:-720h}"
configmap_name="${CONFIGMAP_NAME:-istiod-vault-agent}"

while [[ $# -gt 0 ]]; do
  flag="$1"
  case "$flag" in
    -h | --help)
      usage
      exit 0
      ;;
    --vault-in-cluster)
      vault_in_cluster=true
      shift
      continue
      ;;
    --*=*)
      value="${flag#*=}"
      flag="${flag%%=*}"
      shift
      ;;
    --*)
      [[ $# -ge 2 ]] || die "$flag needs a value (see --help)"
      value="$2"
      shift 2
      ;;
    *) die "unexpected argument \"$flag\" (see --help)" ;;
  esac
  case "$flag" in
    --cluster) cluster="$value" ;;
    --kube-host) kube_host="$value" ;;
    --kube-ca-file) kube_ca_file="$value" ;;
    --token-reviewer-jwt-file) reviewer_jwt_file="$value" ;;
    --auth-mount) auth_mount="$value" ;;
    --role) role="$value" ;;
    --namespace) namespace="$value" ;;
    --service-account) service_account="$value" ;;
    --audience) audience="$value" ;;
    --token-ttl) token_ttl="$value" ;;
    --pki-mount) pki_mount="$value" ;;
    --root-bundle) root_bundle="$value" ;;
    --root-common-name) root_cn="$value" ;;
    --root-key-type) root_key_type="$value" ;;
    --root-ttl) root_ttl="$value" ;;
    --max-ttl) max_ttl="$value" ;;
    --issuer-name) issuer_name="$value" ;;
    --policy) policy="$value" ;;
    --agent-vault-addr) agent_vault_addr="$value" ;;
    --cert-ttl) cert_ttl="$value" ;;
    --configmap-name) configmap_name="$value" ;;
    *) die "unknown option $flag (see --help)" ;;
  esac
done

# --- validate -------------------------------------------------------------------------------------------
name_re='^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$'
path_re='^[A-Za-z0-9]([A-Za-z0-9_./-]*[A-Za-z0-9])?$'
[[ -n "$cluster" ]] || die "--cluster is required (e.g. --cluster cluster1)"
[[ "$cluster" =~ $name_re ]] || die "--cluster: \"$cluster\" must be letters, digits, - _ ."
pki_mount="${pki_mount%/}"
[[ "$pki_mount" =~ $path_re ]] || die "--pki-mount: \"$pki_mount\" is not a mount path"
auth_mount="${auth_mount:-kube-$cluster-mesh-auth}"
auth_mount="${auth_mount#auth/}"
auth_mount="${auth_mount%/}"
[[ "$auth_mount" =~ $path_re ]] || die "--auth-mount: \"$auth_mount\" is not a mount path"
[[ "$role" =~ $name_re ]] || die "--role: \"$role\" must be letters, digits, - _ ."
policy="${policy:-istiod-vault-agent-${pki_mount//\//-}}"
[[ "$policy" =~ $name_re ]] || die "--policy: \"$policy\" must be letters, digits, - _ ."
case "$root_key_type" in
  rsa) root_key_bits=4096 ;;
  ec) root_key_bits=384 ;;
  *) die "--root-key-type must be rsa or ec (got \"$root_key_type\")" ;;
esac
[[ -n "$kube_host" ]] || die "--kube-host is required: the cluster's API server URL as Vault reaches it (e.g. https://api.cluster1.example:6443)"
[[ "$kube_host" =~ ^https?:// ]] || die "--kube-host: \"$kube_host\" must start with https:// (or http://)"
if [[ "$vault_in_cluster" == false ]]; then
  [[ -n "$kube_ca_file" ]] || die "--kube-ca-file is required (the API server's CA; or --vault-in-cluster)"
fi
for f in "$kube_ca_file" "$reviewer_jwt_file" "$root_bundle"; do
  [[ -z "$f" || -r "$f" ]] || die "cannot read $f"
done
if [[ -n "$kube_ca_file" ]] && ! grep -q -- '-----BEGIN CERTIFICATE-----' "$kube_ca_file"; then
  die "--kube-ca-file: $kube_ca_file holds no PEM certificate"
fi
if [[ -n "$root_bundle" ]]; then
  grep -q -- '-----BEGIN CERTIFICATE-----' "$root_bundle" || die "--root-bundle: $root_bundle holds no PEM certificate"
  grep -q -- '-----BEGIN .*PRIVATE KEY-----' "$root_bundle" || die "--root-bundle: $root_bundle holds no unencrypted PEM private key"
fi
IFS=',' read -r -a service_accounts <<<"$service_account"
for sa in "${service_accounts[@]}"; do
  [[ "$sa" =~ $name_re ]] || die "--service-account: \"$sa\" is not a service account name"
done
[[ "$namespace" =~ $name_re ]] || die "--namespace: \"$namespace\" is not a namespace"

# --- the CLI ----------------------------------------------------------------------------------------------
if [[ -n "${VAULT_BIN:-}" ]]; then
  vault_bin="$VAULT_BIN"
elif command -v bao >/dev/null 2>&1; then
  vault_bin="$(command -v bao)"
elif command -v vault >/dev/null 2>&1; then
  vault_bin="$(command -v vault)"
else
  die "neither bao nor vault is on PATH (or set VAULT_BIN)"
fi
[[ -x "$vault_bin" ]] || command -v "$vault_bin" >/dev/null 2>&1 || die "VAULT_BIN: $vault_bin is not executable"
[[ -n "${VAULT_ADDR:-${BAO_ADDR:-}}" ]] || die "VAULT_ADDR is not set"
vault_addr="${VAULT_ADDR:-${BAO_ADDR:-}}"
agent_vault_addr="${agent_vault_addr:-$vault_addr}"

v() { "$vault_bin" "$@"; }

errfile="$(mktemp "${TMPDIR:-/tmp}/istiod-vault-setup.XXXXXX")"
trap 'rm -f "$errfile"' EXIT

# Runs a CLI call whose failure is fatal, with its error on stderr.
must() {
  if ! v "$@" >/dev/null 2>"$errfile"; then
    cat "$errfile" >&2
    die "failed: $(basename "$vault_bin") $1 $2 ..."
  fi
}

# Prints the type of the mount at $2 (kind $1: secrets|auth), or nothing when there is none.
mount_type() {
  local kind="$1" path="$2" list
  if ! list="$(v "$kind" list -format=json 2>"$errfile")"; then
    cat "$errfile" >&2
    die "cannot list $kind mounts (does the token may read sys/mounts and sys/auth?)"
  fi
  if grep -q "\"$path/\"[[:space:]]*:" <<<"$list"; then
    local sys=mounts
    [[ "$kind" == auth ]] && sys=auth
    v read -field=type "sys/$sys/$path" 2>/dev/null || echo unknown
  fi
}

# Prints the default issuer's certificate of the PKI mount, or nothing when it has no issuer yet.
current_root() {
  local out rc=0
  out="$(v list -format=json "$pki_mount/issuers" 2>"$errfile")" || rc=$?
  if [[ $rc -ne 0 ]]; then
    # An empty LIST answers 404, which the CLI reports as exit 2 with "{}" (or "No value found").
    if [[ $rc -eq 2 ]] && ! grep -qi 'error' "$errfile"; then
      return 0
    fi
    cat "$errfile" >&2
    die "cannot list the issuers of $pki_mount"
  fi
  grep -q '[A-Za-z0-9]' <<<"$out" || return 0
  if ! v read -field=certificate "$pki_mount/cert/ca" 2>"$errfile"; then
    cat "$errfile" >&2
    die "$pki_mount has issuers but no default issuer: set one with $(basename "$vault_bin") write $pki_mount/config/issuers default=<issuer>"
  fi
}

# The base64 body of the first certificate in a PEM text, for comparing certificates byte for byte.
cert_body() {
  awk '/-----BEGIN CERTIFICATE-----/{on=1; next} /-----END CERTIFICATE-----/{if (on) exit} on' | tr -d ' \r\n\t'
}

say "using $vault_bin at $vault_addr"

# --- 1. PKI mount -----------------------------------------------------------------------------------------
type="$(mount_type secrets "$pki_mount")"
if [[ -z "$type" ]]; then
  say "enabling pki at $pki_mount/"
  must secrets enable -path="$pki_mount" -max-lease-ttl="$max_ttl" -description="istiod-vault-agent mesh root" pki
elif [[ "$type" != pki ]]; then
  die "$pki_mount/ is mounted but is a \"$type\" engine, not pki: choose another --pki-mount"
else
  say "reusing the pki mount at $pki_mount/"
fi
must secrets tune -max-lease-ttl="$max_ttl" "$pki_mount"

# --- 2. root ----------------------------------------------------------------------------------------------
existing="$(current_root)"
if [[ -n "$existing" ]]; then
  if [[ -n "$root_bundle" ]] && [[ "$(cert_body <<<"$existing")" != "$(cert_body <"$root_bundle")" ]]; then
    die "$pki_mount already holds another root than $root_bundle; refusing to replace it (a root change is a root rotation: see the docs)"
  fi
  say "reusing the existing root of $pki_mount (not regenerated)"
elif [[ -n "$root_bundle" ]]; then
  say "importing the root from $root_bundle into $pki_mount"
  must write "$pki_mount/config/ca" pem_bundle=@"$root_bundle"
  must write "$pki_mount/issuer/default" issuer_name="$issuer_name"
else
  say "generating a $root_key_type root \"$root_cn\" in $pki_mount (the key never leaves Vault)"
  must write "$pki_mount/root/generate/internal" common_name="$root_cn" issuer_name="$issuer_name" \
    key_type="$root_key_type" key_bits="$root_key_bits" ttl="$root_ttl"
fi
root_pem="$(current_root)"
[[ -n "$root_pem" ]] || die "$pki_mount still has no root"

# --- 3. policies ------------------------------------------------------------------------------------------
say "writing policies $policy and $policy-token"
policy_hcl="# istiod-vault-agent: sign istiod's intermediate CA at $pki_mount and read its CA. Nothing else.
path \"$pki_mount/root/sign-intermediate\" {
  capabilities = [\"update\"]
}
path \"$pki_mount/issuer/+/sign-intermediate\" {
  capabilities = [\"update\"]
}
path \"$pki_mount/cert/ca\" {
  capabilities = [\"read\"]
}
path \"$pki_mount/cert/ca_chain\" {
  capabilities = [\"read\"]
}
path \"$pki_mount/issuer/+/json\" {
  capabilities = [\"read\"]
}"
if ! v policy write "$policy" - >/dev/null 2>"$errfile" <<<"$policy_hcl"; then
  cat "$errfile" >&2
  die "cannot write policy $policy"
fi
# The role sets token_no_default_policy, so the token's own lifecycle is granted here, explicitly.
token_hcl="# istiod-vault-agent: the login token may look itself up, renew and revoke itself. Nothing else.
path \"auth/token/lookup-self\" {
  capabilities = [\"read\"]
}
path \"auth/token/renew-self\" {
  capabilities = [\"update\"]
}
path \"auth/token/revoke-self\" {
  capabilities = [\"update\"]
}"
if ! v policy write "$policy-token" - >/dev/null 2>"$errfile" <<<"$token_hcl"; then
  cat "$errfile" >&2
  die "cannot write policy $policy-token"
fi

# --- 4. kubernetes auth, per cluster ----------------------------------------------------------------------
type="$(mount_type auth "$auth_mount")"
if [[ -z "$type" ]]; then
  say "enabling kubernetes auth at auth/$auth_mount/"
  must auth enable -path="$auth_mount" -description="istiod-vault-agent, cluster $cluster" kubernetes
elif [[ "$type" != kubernetes ]]; then
  die "auth/$auth_mount/ is a \"$type\" auth method, not kubernetes: choose another --auth-mount"
else
  say "reusing kubernetes auth at auth/$auth_mount/"
fi
config_args=("kubernetes_host=$kube_host")
if [[ "$vault_in_cluster" == true ]]; then
  config_args+=("disable_local_ca_jwt=false")
else
  config_args+=("disable_local_ca_jwt=true")
fi
[[ -n "$kube_ca_file" ]] && config_args+=("kubernetes_ca_cert=@$kube_ca_file")
[[ -n "$reviewer_jwt_file" ]] && config_args+=("token_reviewer_jwt=@$reviewer_jwt_file")
if [[ "$vault_in_cluster" == false && -z "$reviewer_jwt_file" ]]; then
  say "warning: no --token-reviewer-jwt-file: Vault will call TokenReview with istiod's own token (audience $audience), which the API server normally rejects"
fi
must write "auth/$auth_mount/config" "${config_args[@]}"
say "writing role $role at auth/$auth_mount (service account $namespace/$service_account, audience $audience)"
must write "auth/$auth_mount/role/$role" \
  bound_service_account_names="$service_account" \
  bound_service_account_namespaces="$namespace" \
  audience="$audience" \
  token_policies="$policy,$policy-token" \
  token_no_default_policy=true \
  token_ttl="$token_ttl" \
  token_max_ttl="$token_ttl" \
  token_type=service

# --- 4b. a certificate store that does not grow forever ------------------------------------------------------
# Every issuance stores the signed intermediate in the mount's certificate store: one per renewal and one per
# istiod pod start, per replica, forever unless tidied. Auto-tidy removes certificates expired for longer than
# PKI_TIDY_SAFETY_BUFFER (default 72h) and issuers (old roots after a rotation) expired for more than a year;
# keys are never removed. Vault < 1.12 has no auto-tidy: then a scheduled `<mount>/tidy` call does the same.
configure_auto_tidy() {
  local buffer="${PKI_TIDY_SAFETY_BUFFER:-72h}" interval="${PKI_TIDY_INTERVAL:-12h}"
  if v write "$pki_mount/config/auto-tidy" enabled=true interval_duration="$interval" \
    tidy_cert_store=true tidy_revoked_certs=true safety_buffer="$buffer" \
    tidy_expired_issuers=true issuer_safety_buffer=8760h >/dev/null 2>"$errfile"; then
    say "auto-tidy of $pki_mount: every $interval, removes certificates expired for more than $buffer (each issuance stores one intermediate there) and issuers expired for more than a year"
  else
    cat "$errfile" >&2
    say "warning: could not turn on auto-tidy of $pki_mount (Vault < 1.12 has none); schedule \"$(basename "$vault_bin") write $pki_mount/tidy tidy_cert_store=true safety_buffer=$buffer\" instead, or its certificate store grows by one intermediate per issuance"
  fi
}
configure_auto_tidy

# --- 5. settings ------------------------------------------------------------------------------------------
root_subject="$(awk '/BEGIN CERTIFICATE/,/END CERTIFICATE/' <<<"$root_pem" | openssl x509 -noout -subject 2>/dev/null || true)"
say "done: cluster $cluster signs at $pki_mount/root/sign-intermediate${root_subject:+ under $root_subject}"
cat <<SNIPPET
# Settings for istiod-vault-agent in cluster $cluster (kubectl apply -f - in the cluster).
apiVersion: v1
kind: ConfigMap
metadata:
  name: $configmap_name
  namespace: $namespace
data:
  VAULT_ADDR: "$agent_vault_addr"
  AUTH_METHOD: kubernetes
  AUTH_MOUNT: $auth_mount
  AUTH_ROLE: $role
  PKI_SIGN_PATH: $pki_mount/root/sign-intermediate
  CLUSTER_NAME: $cluster
  CERT_TTL: $cert_ttl
  # VAULT_CACERT: /path/to/mounted/vault-ca.pem   (when Vault's TLS certificate is not from a public CA)
SNIPPET
