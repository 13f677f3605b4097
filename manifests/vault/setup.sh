#!/usr/bin/env bash
# Configures Vault or OpenBao for istiod-vault-agent, for one cluster. Idempotent: run it again (or for
# the next cluster) and it reuses what exists; it never regenerates or replaces an existing root.
#
# What it does, in order:
#   1. enables the root PKI mount (or reuses it) and sets its max lease TTL;
#   2. imports the root from a PEM bundle (--root-bundle) or generates one, only if the mount has none;
#   3. writes two least-privilege policies: <policy> (sign intermediates at the mount, read its CA) and
#      <policy>-token (the login token's own lookup/renew/revoke);
#   4. enables the agent's auth method at a per-cluster mount and writes its role:
#      kubernetes (default; Vault calls the cluster's TokenReview API), jwt (Vault checks istiod's projected
#      token itself, with the cluster's OIDC discovery URL, JWKS URL or public keys: for a Vault that
#      cannot reach the API server), or approle (role_id in the settings, secret-id in a Secret);
#      the role is bound to istiod's service account(s) in its namespace: istiod, or istiod-<rev> for a
#      revision (--revision), with audience vault;
#   5. prints a ConfigMap with the agent's settings on stdout (progress goes to stderr), and a ConfigMap
#      with Vault's CA when the agent needs one (--agent-vault-ca-file, default $VAULT_CACERT).
#
# Needs: the `bao` or `vault` CLI (VAULT_BIN overrides), VAULT_ADDR and a token allowed to manage mounts,
# policies and auth methods (VAULT_TOKEN or the CLI's token helper). Run with --help for the options.
set -euo pipefail

prog="$(basename "$0")"

usage() {
  cat <<USAGE
Usage: $prog --cluster NAME [--auth kubernetes] --kube-host URL (--kube-ca-file FILE | --vault-in-cluster) [options]
       $prog --cluster NAME --auth jwt (--oidc-discovery-url URL | --jwks-url URL | --jwt-public-key-file FILE) [options]
       $prog --cluster NAME --auth approle [options]

Per cluster (flag, or the environment variable in brackets):
  --cluster NAME              cluster name; goes into CLUSTER_NAME and the default auth mount [CLUSTER_NAME]
  --auth METHOD               how the agent logs in: kubernetes (default), jwt or approle [AUTH_METHOD]
  --auth-mount PATH           default <kube|jwt|approle>-<cluster>-mesh-auth [AUTH_MOUNT]
  --role NAME                 default istiod [AUTH_ROLE]
  --namespace NS              istiod's namespace, default istio-system [ISTIOD_NAMESPACE]
  --revision REV              istiod's revision(s), comma-separated: the role is bound to the service account
                              istiod-<REV> of each ("default" or empty: istiod) [ISTIOD_REVISION]
  --service-account NAME      istiod's service account(s), comma-separated, instead of deriving them from
                              --revision [ISTIOD_SERVICE_ACCOUNT]
  --audience AUD              audience of the projected token, default vault [TOKEN_AUDIENCE]
  --token-ttl DUR             lifetime of the agent's Vault token, default 1h [TOKEN_TTL]

  kubernetes auth (Vault reviews istiod's token with the cluster's TokenReview API):
  --kube-host URL             the cluster's API server as Vault reaches it [KUBE_HOST]
  --kube-ca-file FILE         PEM CA of that API server [KUBE_CA_FILE]
  --token-reviewer-jwt-file FILE
                              JWT Vault sends with TokenReview calls: a long-lived token of a service
                              account bound to system:auth-delegator [TOKEN_REVIEWER_JWT_FILE]. Without it
                              Vault uses istiod's own token, which the API server rejects unless its
                              audience is the API server's: give one when Vault runs outside the cluster.
  --vault-in-cluster          Vault runs in this very cluster: use its pod's own CA and token instead of
                              --kube-ca-file/--token-reviewer-jwt-file

  jwt auth (Vault verifies istiod's token itself and never calls the cluster; exactly one source of keys):
  --oidc-discovery-url URL    the cluster's service-account issuer, whose /.well-known/openid-configuration
                              Vault can fetch (kubectl get --raw /.well-known/openid-configuration) [OIDC_DISCOVERY_URL]
  --oidc-discovery-ca-file FILE
                              PEM CA for that URL [OIDC_DISCOVERY_CA_FILE]
  --jwks-url URL              the cluster's JWKS endpoint as Vault reaches it [JWKS_URL]
  --jwks-ca-file FILE         PEM CA for that URL [JWKS_CA_FILE]
  --jwt-public-key-file FILE  PEM public key(s) that sign the cluster's service-account tokens, comma-separated
                              files (several during a key rotation) [JWT_PUBLIC_KEY_FILE]
  --jwt-issuer ISS            the tokens' issuer (iss), checked when given [JWT_ISSUER]

  approle auth (the secret-id goes into a Secret; this script never sees it):
  --secret-id-ttl DUR         lifetime of each secret-id, default 0 (no expiry) [SECRET_ID_TTL]

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
  --agent-vault-ca-file FILE  CA of Vault's TLS certificate for the agent, default \$VAULT_CACERT; printed as
                              the ConfigMap istiod-vault-agent-vault-ca, which every manifest variant mounts;
                              sets VAULT_CACERT. Empty: none [AGENT_VAULT_CA_FILE]
  --cert-ttl DUR              CERT_TTL for the agent, default 720h [CERT_TTL]
  --configmap-name NAME       default istiod-vault-agent [CONFIGMAP_NAME]

Environment: VAULT_BIN (default: bao, then vault, on PATH), VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT ...
USAGE
}

die() {
  echo "$prog: $*" >&2
  exit 1
}
say() { echo "$prog: $*" >&2; }

cluster="${CLUSTER_NAME:-}"
auth="${AUTH_METHOD:-kubernetes}"
kube_host="${KUBE_HOST:-}"
kube_ca_file="${KUBE_CA_FILE:-}"
reviewer_jwt_file="${TOKEN_REVIEWER_JWT_FILE:-}"
vault_in_cluster=false
auth_mount="${AUTH_MOUNT:-}"
role="${AUTH_ROLE:-istiod}"
namespace="${ISTIOD_NAMESPACE:-istio-system}"
revision="${ISTIOD_REVISION:-}"
service_account="${ISTIOD_SERVICE_ACCOUNT:-}"
oidc_discovery_url="${OIDC_DISCOVERY_URL:-}"
oidc_discovery_ca_file="${OIDC_DISCOVERY_CA_FILE:-}"
jwks_url="${JWKS_URL:-}"
jwks_ca_file="${JWKS_CA_FILE:-}"
jwt_public_key_file="${JWT_PUBLIC_KEY_FILE:-}"
jwt_issuer="${JWT_ISSUER:-}"
secret_id_ttl="${SECRET_ID_TTL:-0}"
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
agent_vault_ca_file="${AGENT_VAULT_CA_FILE-${VAULT_CACERT:-${BAO_CACERT:-}}}"
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
    --auth) auth="$value" ;;
    --kube-host) kube_host="$value" ;;
    --kube-ca-file) kube_ca_file="$value" ;;
    --token-reviewer-jwt-file) reviewer_jwt_file="$value" ;;
    --auth-mount) auth_mount="$value" ;;
    --role) role="$value" ;;
    --namespace) namespace="$value" ;;
    --revision) revision="$value" ;;
    --service-account) service_account="$value" ;;
    --oidc-discovery-url) oidc_discovery_url="$value" ;;
    --oidc-discovery-ca-file) oidc_discovery_ca_file="$value" ;;
    --jwks-url) jwks_url="$value" ;;
    --jwks-ca-file) jwks_ca_file="$value" ;;
    --jwt-public-key-file) jwt_public_key_file="$value" ;;
    --jwt-issuer) jwt_issuer="$value" ;;
    --secret-id-ttl) secret_id_ttl="$value" ;;
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
    --agent-vault-ca-file) agent_vault_ca_file="$value" ;;
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
case "$auth" in
  kubernetes) mount_prefix=kube ;;
  jwt | approle) mount_prefix="$auth" ;;
  *) die "--auth must be kubernetes, jwt or approle (got \"$auth\")" ;;
esac
pki_mount="${pki_mount%/}"
[[ "$pki_mount" =~ $path_re ]] || die "--pki-mount: \"$pki_mount\" is not a mount path"
auth_mount="${auth_mount:-$mount_prefix-$cluster-mesh-auth}"
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

# Options of the other methods are mistakes, not no-ops: say so rather than ignore them.
only_for() {
  local method="$1" flag="$2" value="$3"
  [[ -z "$value" || "$auth" == "$method" ]] || die "$flag applies to --auth $method only (this run: --auth $auth)"
}
only_for kubernetes --kube-host "$kube_host"
only_for kubernetes --kube-ca-file "$kube_ca_file"
only_for kubernetes --token-reviewer-jwt-file "$reviewer_jwt_file"
[[ "$vault_in_cluster" == false || "$auth" == kubernetes ]] || die "--vault-in-cluster applies to --auth kubernetes only (this run: --auth $auth)"
for f in oidc-discovery-url oidc-discovery-ca-file jwks-url jwks-ca-file jwt-public-key-file jwt-issuer; do
  var="${f//-/_}"
  only_for jwt "--$f" "${!var}"
done

case "$auth" in
  kubernetes)
    [[ -n "$kube_host" ]] || die "--kube-host is required with --auth kubernetes: the cluster's API server URL as Vault reaches it (e.g. https://api.cluster1.example:6443)"
    [[ "$kube_host" =~ ^https?:// ]] || die "--kube-host: \"$kube_host\" must start with https:// (or http://)"
    if [[ "$vault_in_cluster" == false ]]; then
      [[ -n "$kube_ca_file" ]] || die "--kube-ca-file is required with --auth kubernetes (the API server's CA; or --vault-in-cluster)"
    fi
    ;;
  jwt)
    sources=0
    for v in "$oidc_discovery_url" "$jwks_url" "$jwt_public_key_file"; do [[ -n "$v" ]] && sources=$((sources + 1)); done
    [[ $sources -eq 1 ]] || die "--auth jwt needs exactly one of --oidc-discovery-url, --jwks-url, --jwt-public-key-file (got $sources)"
    for u in "$oidc_discovery_url" "$jwks_url"; do
      [[ -z "$u" || "$u" =~ ^https?:// ]] || die "\"$u\" must start with https:// (or http://)"
    done
    [[ -z "$oidc_discovery_ca_file" || -n "$oidc_discovery_url" ]] || die "--oidc-discovery-ca-file needs --oidc-discovery-url"
    [[ -z "$jwks_ca_file" || -n "$jwks_url" ]] || die "--jwks-ca-file needs --jwks-url"
    ;;
esac
[[ "$secret_id_ttl" == 0 || "$auth" == approle ]] || die "--secret-id-ttl applies to --auth approle only (this run: --auth $auth)"

IFS=',' read -r -a public_keys <<<"$jwt_public_key_file"
for f in "$kube_ca_file" "$reviewer_jwt_file" "$root_bundle" "$oidc_discovery_ca_file" "$jwks_ca_file" "$agent_vault_ca_file" "${public_keys[@]}"; do
  [[ -z "$f" || -r "$f" ]] || die "cannot read $f"
done
for f in "$kube_ca_file" "$oidc_discovery_ca_file" "$jwks_ca_file" "$agent_vault_ca_file"; do
  if [[ -n "$f" ]] && ! grep -q -- '-----BEGIN CERTIFICATE-----' "$f"; then
    die "$f holds no PEM certificate"
  fi
done
for f in "${public_keys[@]}"; do
  grep -q -- '-----BEGIN PUBLIC KEY-----' "$f" || die "--jwt-public-key-file: $f holds no PEM public key (-----BEGIN PUBLIC KEY-----)"
done
if [[ -n "$root_bundle" ]]; then
  grep -q -- '-----BEGIN CERTIFICATE-----' "$root_bundle" || die "--root-bundle: $root_bundle holds no PEM certificate"
  grep -q -- '-----BEGIN .*PRIVATE KEY-----' "$root_bundle" || die "--root-bundle: $root_bundle holds no unencrypted PEM private key"
fi

# istiod's service account(s): istiod for the default revision, istiod-<rev> for a revision (the chart
# names the Deployment, ServiceAccount and Service alike).
if [[ -n "$service_account" && -n "$revision" ]]; then
  die "give --revision or --service-account, not both"
fi
sa_source="--service-account"
if [[ -z "$service_account" ]]; then
  sa_source="${revision:+derived from --revision $revision}"
  sa_source="${sa_source:-the default revision}"
  IFS=',' read -r -a revisions <<<"${revision:-default}"
  derived=()
  for rev in "${revisions[@]}"; do
    [[ "$rev" =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$ ]] || die "--revision: \"$rev\" is not a revision name"
    if [[ "$rev" == default ]]; then derived+=(istiod); else derived+=("istiod-$rev"); fi
  done
  service_account="$(IFS=','; echo "${derived[*]}")"
fi
IFS=',' read -r -a service_accounts <<<"$service_account"
for sa in "${service_accounts[@]}"; do
  [[ "$sa" =~ $name_re ]] || die "--service-account: \"$sa\" is not a service account name"
done
[[ "$namespace" =~ $name_re ]] || die "--namespace: \"$namespace\" is not a namespace"
[[ "$audience" =~ ^[A-Za-z0-9][A-Za-z0-9:/._-]*$ ]] || die "--audience: \"$audience\" must be letters, digits, : / . _ -"
for d in "$token_ttl" "$secret_id_ttl" "$cert_ttl"; do
  [[ "$d" =~ ^[0-9]+(ms|s|m|h)?$ ]] || die "\"$d\" is not a duration (use 90s, 15m, 720h)"
done

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

# --- 4. auth, per cluster --------------------------------------------------------------------------------
type="$(mount_type auth "$auth_mount")"
if [[ -z "$type" ]]; then
  say "enabling $auth auth at auth/$auth_mount/"
  must auth enable -path="$auth_mount" -description="istiod-vault-agent, cluster $cluster" "$auth"
elif [[ "$type" != "$auth" ]]; then
  die "auth/$auth_mount/ is a \"$type\" auth method, not $auth: choose another --auth-mount"
else
  say "reusing $auth auth at auth/$auth_mount/"
fi
subjects=()
for sa in "${service_accounts[@]}"; do subjects+=("system:serviceaccount:$namespace:$sa"); done
say "istiod's service account(s): ${subjects[*]} ($sa_source)"
token_args=(
  token_policies="$policy,$policy-token"
  token_no_default_policy=true
  token_ttl="$token_ttl"
  token_max_ttl="$token_ttl"
  token_type=service
)

case "$auth" in
  kubernetes)
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
    say "writing role $role at auth/$auth_mount (service account(s) $namespace/$service_account, audience $audience)"
    must write "auth/$auth_mount/role/$role" \
      bound_service_account_names="$service_account" \
      bound_service_account_namespaces="$namespace" \
      audience="$audience" \
      "${token_args[@]}"
    ;;
  jwt)
    config_args=()
    if [[ -n "$oidc_discovery_url" ]]; then
      config_args+=("oidc_discovery_url=$oidc_discovery_url")
      [[ -n "$oidc_discovery_ca_file" ]] && config_args+=("oidc_discovery_ca_pem=@$oidc_discovery_ca_file")
      source_desc="OIDC discovery at $oidc_discovery_url"
    elif [[ -n "$jwks_url" ]]; then
      config_args+=("jwks_url=$jwks_url")
      [[ -n "$jwks_ca_file" ]] && config_args+=("jwks_ca_pem=@$jwks_ca_file")
      source_desc="JWKS at $jwks_url"
    else
      # A repeated key becomes a list.
      for f in "${public_keys[@]}"; do config_args+=("jwt_validation_pubkeys=@$f"); done
      source_desc="${#public_keys[@]} public key(s)"
    fi
    [[ -n "$jwt_issuer" ]] && config_args+=("bound_issuer=$jwt_issuer")
    say "configuring jwt auth at auth/$auth_mount with $source_desc${jwt_issuer:+, issuer $jwt_issuer}"
    must write "auth/$auth_mount/config" "${config_args[@]}"
    # One service account: bound_subject. Several: bound_claims on sub (any of the list). JSON, because
    # bound_claims is a map; every value in it was validated above (no quotes, no backslashes).
    if [[ ${#subjects[@]} -eq 1 ]]; then
      bound="\"bound_subject\":\"${subjects[0]}\""
    else
      list="$(printf '"%s",' "${subjects[@]}")"
      bound="\"bound_claims_type\":\"string\",\"bound_claims\":{\"sub\":[${list%,}]}"
    fi
    say "writing role $role at auth/$auth_mount (subject(s) ${subjects[*]}, audience $audience)"
    must write "auth/$auth_mount/role/$role" - <<JSON
{"role_type":"jwt","user_claim":"sub","bound_audiences":["$audience"],$bound,
 "token_policies":["$policy","$policy-token"],"token_no_default_policy":true,
 "token_ttl":"$token_ttl","token_max_ttl":"$token_ttl","token_type":"service"}
JSON
    ;;
  approle)
    say "writing role $role at auth/$auth_mount (secret-id ttl $secret_id_ttl)"
    must write "auth/$auth_mount/role/$role" \
      bind_secret_id=true \
      secret_id_ttl="$secret_id_ttl" \
      secret_id_num_uses=0 \
      "${token_args[@]}"
    if ! role_id="$(v read -field=role_id "auth/$auth_mount/role/$role/role-id" 2>"$errfile")"; then
      cat "$errfile" >&2
      die "cannot read the role_id of auth/$auth_mount/role/$role"
    fi
    ;;
esac

# --- 5. settings ------------------------------------------------------------------------------------------
root_subject="$(awk '/BEGIN CERTIFICATE/,/END CERTIFICATE/' <<<"$root_pem" | openssl x509 -noout -subject 2>/dev/null || true)"
say "done: cluster $cluster signs at $pki_mount/root/sign-intermediate${root_subject:+ under $root_subject}"
sans=()
for sa in "${service_accounts[@]}"; do sans+=("$sa.$namespace.svc"); done
say "each istiod derives CERT_DNS_SANS from its pod (<service account>.<namespace>.svc): ${sans[*]}"
# Where every manifest variant mounts the optional inputs (manifests/kustomize/common/pod.yaml).
vault_ca_path=/var/run/secrets/istiod-vault-agent/vault-ca/ca.pem
approle_secret_path=/var/run/secrets/istiod-vault-agent/approle/secret-id
if [[ "$auth" == approle ]]; then
  say "create the secret-id Secret in $namespace (the secret-id goes from Vault to the cluster, never to this terminal):"
  say "  $(basename "$vault_bin") write -f -field=secret_id auth/$auth_mount/role/$role/secret-id | kubectl -n $namespace create secret generic istiod-vault-agent-approle --from-file=secret-id=/dev/stdin"
fi
cat <<SNIPPET
# Settings for istiod-vault-agent in cluster $cluster (kubectl apply -f - in the cluster).
apiVersion: v1
kind: ConfigMap
metadata:
  name: $configmap_name
  namespace: $namespace
data:
  VAULT_ADDR: "$agent_vault_addr"
  AUTH_METHOD: $auth
  AUTH_MOUNT: $auth_mount
SNIPPET
case "$auth" in
  kubernetes | jwt) echo "  AUTH_ROLE: $role" ;;
  approle)
    echo "  APPROLE_ROLE_ID: \"$role_id\""
    echo "  APPROLE_SECRET_ID_FILE: $approle_secret_path"
    ;;
esac
cat <<SNIPPET
  PKI_SIGN_PATH: $pki_mount/root/sign-intermediate
  CLUSTER_NAME: $cluster
  CERT_TTL: $cert_ttl
SNIPPET
if [[ -n "$agent_vault_ca_file" ]]; then
  echo "  VAULT_CACERT: $vault_ca_path"
  cat <<SNIPPET
---
# The CA of Vault's TLS certificate, for the agent (VAULT_CACERT above); public, not a secret.
apiVersion: v1
kind: ConfigMap
metadata:
  name: istiod-vault-agent-vault-ca
  namespace: $namespace
data:
  ca.pem: |
SNIPPET
  sed -e 's/\r$//' -e 's/^/    /' "$agent_vault_ca_file"
fi
