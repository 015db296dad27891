#!/usr/bin/env python3
"""Consistency checks for chatgate's deployment artefacts, run by deploy/check.sh.

Schema validation is left to the real tools (promtool, kubernetes-validate,
check-jsonschema, hadolint); this file checks what they cannot: that the files
agree with each other and with the public contract. Each subcommand prints the
problems it finds, one per line, and exits 1 when there is any.

Usage: check_artifacts.py COMMAND [ARGS]   (run from the repository root)
  alerts                      alert rules are complete and each is tested both ways
  dashboard OUT_RULES_FILE    dashboard structure; writes its queries as recording
                              rules to OUT_RULES_FILE for `promtool check rules`
  provisioning                Grafana provisioning files agree with the dashboard
  compose                     compose services, mounts and variables
  dockerfile                  the image's contract (user, healthcheck, entrypoint, ...)
  kustomize                   kustomization.yaml lists exactly the manifests to apply
  k8s-policy                  deployment hardening and probes
  metric-names                metric names used here exist in src/ (skipped until they do)
"""

import json
import pathlib
import re
import sys

import yaml

DEPLOY = pathlib.Path("deploy")

# Metric families the README lists under "Operating it" (defined in src/metrics.rs).
HISTOGRAMS = {
    "chatgate_http_request_duration_seconds",
    "chatgate_upstream_request_duration_seconds",
    "chatgate_chat_duration_seconds",
}
METRICS = HISTOGRAMS | {
    "chatgate_http_requests_total",
    "chatgate_in_flight_requests",
    "chatgate_upstream_requests_total",
    "chatgate_upstream_retries_total",
    "chatgate_fallbacks_total",
    "chatgate_circuit_breaker_state",
    "chatgate_rate_limited_total",
    "chatgate_tokens_total",
    "chatgate_state_errors_total",
    "chatgate_interaction_log_dropped_total",
    "chatgate_trace_spans_dropped_total",
    # Cost control (README "Control cost").
    "chatgate_cost_usd_total",
    "chatgate_budget_used_ratio",
    "chatgate_budget_exceeded_total",
    "chatgate_cache_requests_total",
    "chatgate_cache_entries",
    "chatgate_cache_bytes",
    "chatgate_faq_answers_total",
    # Safety and live configuration (README "Safety", "Roll out changes").
    "chatgate_guard_matches_total",
    "chatgate_config_reloads_total",
    "chatgate_config_info",
    # Rollout (README "Roll out changes").
    "chatgate_chat_requests_total",
    "chatgate_canary_rollbacks_total",
    "chatgate_canary_percent",
}
METRIC_RE = re.compile(r"\bchatgate_[a-z0-9_]+\b")
SEVERITIES = {"critical", "warning"}


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def metric_family(name):
    """chatgate_x_bucket -> chatgate_x for histograms; None when unknown."""
    if name in METRICS:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and base in HISTOGRAMS:
            return base
    return None


def unknown_metrics(expr):
    return sorted({m for m in METRIC_RE.findall(expr) if metric_family(m) is None})


def check_alerts():
    problems = []
    rules = load_yaml(DEPLOY / "prometheus/alerts.yml")
    tests = load_yaml(DEPLOY / "prometheus/alerts_test.yml")
    alerts = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            name = rule["alert"]
            if name in alerts:
                problems.append(f"alert {name} is defined twice")
            alerts[name] = rule
            if rule.get("labels", {}).get("severity") not in SEVERITIES:
                problems.append(f"alert {name}: labels.severity must be one of {sorted(SEVERITIES)}")
            if "for" not in rule:
                problems.append(f"alert {name}: has no `for` duration")
            for key in ("summary", "description"):
                if not rule.get("annotations", {}).get(key, "").strip():
                    problems.append(f"alert {name}: annotation {key} is missing")
            for metric in unknown_metrics(rule["expr"]):
                problems.append(f"alert {name}: unknown metric {metric}")
    fired, silent = set(), set()
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            name = case["alertname"]
            if name not in alerts:
                problems.append(f"alerts_test.yml tests unknown alert {name}")
            (fired if case.get("exp_alerts") else silent).add(name)
    for name in sorted(alerts):
        if name not in fired:
            problems.append(f"alert {name}: no test shows it firing")
        if name not in silent:
            problems.append(f"alert {name}: no test shows it staying silent")
    return problems, f"{len(alerts)} alerts, each with firing and silent test cases"


def overlaps(a, b):
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def check_dashboard(out_rules):
    problems = []
    path = DEPLOY / "grafana/dashboards/chatgate.json"
    dash = json.loads(path.read_text(encoding="utf-8"))
    for key in ("uid", "title", "schemaVersion", "panels", "templating", "time"):
        if key not in dash:
            problems.append(f"{path}: missing top-level field {key}")
    if dash.get("id") is not None:
        problems.append(f"{path}: id must be null in a provisioned dashboard")
    if not 36 <= dash.get("schemaVersion", 0) <= 41:
        problems.append(f"{path}: schemaVersion {dash.get('schemaVersion')} outside 36..41")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dash.get("uid", "")):
        problems.append(f"{path}: uid must be 1-40 of [A-Za-z0-9_-]")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds_var = variables.get("datasource", {})
    if ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus":
        problems.append(f"{path}: needs a `datasource` variable of type datasource, query prometheus")

    ids, boxes, exprs = set(), [], []
    for panel in dash.get("panels", []):
        title = panel.get("title", "<untitled>")
        pid = panel.get("id")
        if pid in ids:
            problems.append(f"panel {title!r}: duplicate id {pid}")
        ids.add(pid)
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
            problems.append(f"panel {title!r}: gridPos needs integer x, y, w, h")
            continue
        if grid["x"] < 0 or grid["x"] + grid["w"] > 24:
            problems.append(f"panel {title!r}: gridPos is wider than the 24-column grid")
        for other_title, other in boxes:
            if overlaps(grid, other):
                problems.append(f"panel {title!r} overlaps panel {other_title!r}")
        boxes.append((title, grid))
        if panel.get("type") == "row":
            continue
        if not panel.get("title"):
            problems.append(f"panel {pid}: has no title")
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {title!r}: datasource must be the ${{datasource}} variable")
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"panel {title!r}: has no queries")
        for target in targets:
            expr = target.get("expr", "")
            if not expr.strip():
                problems.append(f"panel {title!r}: query {target.get('refId')} is empty")
            if target.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"panel {title!r}: query {target.get('refId')} must use ${{datasource}}")
            for metric in unknown_metrics(expr):
                problems.append(f"panel {title!r}: unknown metric {metric}")
            exprs.append((title, expr))

    # Grafana's variables, replaced by values promtool can parse.
    substitutions = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}
    rules = []
    for i, (title, expr) in enumerate(exprs, 1):
        for var, value in substitutions.items():
            expr = expr.replace(var, value)
        if "$" in expr:
            problems.append(f"panel {title!r}: unknown Grafana variable in {expr!r}")
        rules.append({"record": f"dashboard_query_{i}", "expr": expr})
    pathlib.Path(out_rules).write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, sort_keys=False),
        encoding="utf-8")
    panels = sum(1 for p in dash.get("panels", []) if p.get("type") != "row")
    return problems, f"{panels} panels, {len(exprs)} queries"


def check_provisioning():
    problems = []
    ds = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")
    uids = {d.get("uid"): d for d in ds.get("datasources", [])}
    dash = json.loads((DEPLOY / "grafana/dashboards/chatgate.json").read_text(encoding="utf-8"))
    default_uid = next((v.get("current", {}).get("value") for v in dash["templating"]["list"]
                        if v.get("name") == "datasource"), None)
    if default_uid not in uids:
        problems.append(f"dashboard's default datasource uid {default_uid!r} is not provisioned")
    elif uids[default_uid].get("type") != "prometheus":
        problems.append(f"datasource {default_uid!r} is not of type prometheus")
    compose = load_yaml(DEPLOY / "docker-compose.yml")
    mounts = {}
    for volume in compose["services"]["grafana"].get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[target] = source
    providers = load_yaml(DEPLOY / "grafana/provisioning/dashboards/dashboards.yml")
    for provider in providers.get("providers", []):
        path = provider.get("options", {}).get("path")
        if mounts.get(path) != "./grafana/dashboards":
            problems.append(f"dashboard provider path {path} is not where compose mounts ./grafana/dashboards")
    return problems, "datasource uid and dashboard path match the dashboard and compose"


def check_compose():
    problems = []
    compose = load_yaml(DEPLOY / "docker-compose.yml")
    services = compose.get("services", {})
    for name in ("chatgate", "redis", "prometheus", "grafana"):
        if name not in services:
            problems.append(f"service {name} is missing")
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = DEPLOY / (build["context"] if isinstance(build, dict) else build)
            dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
            if not (context / dockerfile).is_file():
                problems.append(f"service {name}: build file {context / dockerfile} does not exist")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")) and not (DEPLOY / source).exists():
                problems.append(f"service {name}: mounted path {source} does not exist")
    chatgate = services.get("chatgate", {})
    env = chatgate.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    required = ("APP_ENV", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "CHATGATE_FRONTEND_KEY",
                "CHATGATE_METRICS__TOKEN", "CHATGATE_STATE__BACKEND", "CHATGATE_REDIS_URL")
    for key in required:
        if key not in env:
            problems.append(f"service chatgate: environment {key} is missing")
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "CHATGATE_FRONTEND_KEY", "CHATGATE_METRICS__TOKEN"):
        if key in env and not str(env[key]).startswith("${" + key):
            problems.append(f"service chatgate: {key} must come from the host environment, not the file")
    # A provider key is needed only while a model targets that provider: the
    # gateway's own start-up check says which; compose must not demand it.
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        if key in env and ":?" in str(env[key]):
            problems.append(f"service chatgate: {key} must be optional (${{{key}:-}})")
    env_files = chatgate.get("env_file", [])
    env_files = [env_files] if isinstance(env_files, (str, dict)) else env_files
    paths = [f if isinstance(f, str) else f.get("path") for f in env_files]
    if ".env" not in paths:
        problems.append("service chatgate: env_file .env is missing")
    if not (DEPLOY / ".env.example").is_file():
        problems.append("deploy/.env.example (the template for deploy/.env) is missing")
    for name, service in services.items():
        for port in service.get("ports", []):
            spec = port if isinstance(port, str) else str(port.get("host_ip", "")) + ":"
            if not re.match(r"^(127\.0\.0\.1:|\$\{[A-Z_]+:-127\.0\.0\.1:)", spec):
                problems.append(f"service {name}: port {port} is not published on 127.0.0.1 by default")
    # Prometheus scrapes /metrics with the token chatgate requires.
    token_source = compose.get("secrets", {}).get("metrics_token", {}).get("environment")
    if token_source != "CHATGATE_METRICS__TOKEN":
        problems.append("secret metrics_token must come from CHATGATE_METRICS__TOKEN")
    targets = [s.get("target", s.get("source")) if isinstance(s, dict) else s
               for s in services.get("prometheus", {}).get("secrets", [])
               if (s.get("source") if isinstance(s, dict) else s) == "metrics_token"]
    prometheus = load_yaml(DEPLOY / "prometheus/prometheus.yml")
    job = next((j for j in prometheus.get("scrape_configs", []) if j.get("job_name") == "chatgate"), {})
    credentials = job.get("authorization", {}).get("credentials_file")
    if not targets or credentials != f"/run/secrets/{targets[0]}":
        problems.append(f"prometheus.yml's credentials_file {credentials!r} is not where compose "
                        f"mounts the metrics_token secret")
    problems += check_sentinel_profile(services)
    return problems, f"{len(services)} services, mounts and variables consistent"


def check_sentinel_profile(services):
    """The `redis-sentinel` profile: a master, a replica of it, and at least
    three sentinels monitoring it as `mymaster` with quorum 2 (what the
    comments tell chatgate to use)."""
    problems = []
    profile = {n: s for n, s in services.items() if "redis-sentinel" in s.get("profiles", [])}
    text = {n: " ".join(map(str, s.get("command", []))) for n, s in profile.items()}
    sentinels = [n for n, t in text.items() if "--sentinel" in t]
    if len(sentinels) < 3:
        problems.append(f"profile redis-sentinel: {len(sentinels)} sentinels, want 3 (a quorum of 2 survives one)")
    for name in sentinels:
        if "sentinel monitor mymaster redis-master 6379 2" not in text[name]:
            problems.append(f"service {name}: does not monitor redis-master:6379 as mymaster with quorum 2")
    if "redis-master" not in profile:
        problems.append("profile redis-sentinel: service redis-master is missing")
    replicas = [n for n, t in text.items() if "--replicaof redis-master 6379" in t]
    if not replicas:
        problems.append("profile redis-sentinel: no replica of redis-master")
    comments = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    for name in sentinels:
        if f"redis://{name}:26379" not in comments:
            problems.append(f"the chatgate comments do not list sentinel {name} in CHATGATE_REDIS_URL")
    return problems


def check_dockerfile():
    problems = []
    text = pathlib.Path("Dockerfile").read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    final = lines[max(i for i, line in enumerate(lines) if line.upper().startswith("FROM ")):]
    final_text = "\n".join(final)
    expected = {
        "non-root USER 10001": r"^USER 10001(:10001)?$",
        "ENV APP_ENV=production": r"^ENV APP_ENV=production$",
        "EXPOSE 8080": r"^EXPOSE 8080$",
        "HEALTHCHECK running `chatgate healthcheck`": r'CMD \["chatgate", ?"healthcheck"\]',
        "STOPSIGNAL SIGTERM": r"^STOPSIGNAL SIGTERM$",
        'ENTRYPOINT ["chatgate"]': r'^ENTRYPOINT \["chatgate"\]$',
        "binary at /usr/local/bin/chatgate": r"^COPY --from=\S+ \S+ /usr/local/bin/chatgate$",
        "config copied to /app/config": r"^COPY (--\S+ )*config /app/config/?$",
        "WORKDIR /app": r"^WORKDIR /app$",
    }
    for what, pattern in expected.items():
        if not re.search(pattern, final_text, re.MULTILINE):
            problems.append(f"final stage lacks {what}")
    if re.search(r"\b(curl|wget)\b", final_text):
        problems.append("final stage mentions curl or wget: the image must not ship them")
    if "cargo build --release --locked" not in text:
        problems.append("builder does not run `cargo build --release --locked`")
    ignore = pathlib.Path(".dockerignore")
    if not ignore.is_file():
        problems.append(".dockerignore is missing")
    else:
        entries = {line.strip() for line in ignore.read_text(encoding="utf-8").splitlines()}
        for entry in ("target/", ".git/", ".env"):
            if entry not in entries:
                problems.append(f".dockerignore does not exclude {entry}")
    return problems, "user, healthcheck, entrypoint, no curl, .dockerignore"


def check_kustomize():
    problems = []
    kustomization = load_yaml(DEPLOY / "k8s/kustomization.yaml")
    listed = kustomization.get("resources", [])
    for resource in listed:
        if not (DEPLOY / "k8s" / resource).is_file():
            problems.append(f"kustomization lists {resource}, which does not exist")
    present = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    for name in sorted(present - set(listed) - {"secret.example.yaml"}):
        problems.append(f"{name} is not listed in kustomization.yaml")
    if "secret.example.yaml" in listed:
        problems.append("secret.example.yaml must not be applied: it holds placeholders")
    return problems, f"{len(listed)} resources listed, secret example excluded"


def check_k8s_policy():
    problems = []
    deployment = load_yaml(DEPLOY / "k8s/deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    if deployment["spec"].get("replicas", 1) < 2:
        problems.append("deployment: fewer than 2 replicas")
    if pod.get("terminationGracePeriodSeconds", 30) <= 30:
        problems.append("deployment: terminationGracePeriodSeconds must exceed shutdown_grace (30s)")
    for container in pod["containers"]:
        name = container["name"]
        sc = container.get("securityContext", {})
        wanted = {"runAsNonRoot": True, "runAsUser": 10001, "readOnlyRootFilesystem": True,
                  "allowPrivilegeEscalation": False}
        for key, value in wanted.items():
            if sc.get(key) != value:
                problems.append(f"container {name}: securityContext.{key} should be {value}")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.append(f"container {name}: capabilities must drop ALL")
        seccomp = sc.get("seccompProfile") or pod.get("securityContext", {}).get("seccompProfile", {})
        if seccomp.get("type") != "RuntimeDefault":
            problems.append(f"container {name}: seccompProfile must be RuntimeDefault")
        probes = {"livenessProbe": "/health", "readinessProbe": "/health/ready"}
        for probe, path in probes.items():
            if container.get(probe, {}).get("httpGet", {}).get("path") != path:
                problems.append(f"container {name}: {probe} must GET {path}")
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in container.get("resources", {}).get(kind, {}):
                    problems.append(f"container {name}: resources.{kind}.{resource} is missing")
        env = {e["name"] for e in container.get("env", [])}
        for key in ("APP_ENV", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "CHATGATE_FRONTEND_KEY",
                    "CHATGATE_REDIS_URL"):
            if key not in env:
                problems.append(f"container {name}: env {key} is missing")
    return problems, "non-root, read-only, no capabilities, probes, resources, grace period"


def check_metric_names():
    """Every metric family used here must appear in the Rust sources, with or
    without the chatgate_ prefix (which code may add in one place)."""
    src = "\n".join(p.read_text(encoding="utf-8") for p in pathlib.Path("src").rglob("*.rs"))
    used = set()
    texts = [(DEPLOY / "prometheus/alerts.yml").read_text(encoding="utf-8"),
             (DEPLOY / "grafana/dashboards/chatgate.json").read_text(encoding="utf-8")]
    for text in texts:
        used |= {metric_family(m) for m in METRIC_RE.findall(text)} - {None}
    found = {m for m in used if m.removeprefix("chatgate_") in src}
    if not found:
        return [], "SKIP: src/ defines none of these metrics yet"
    problems = [f"{m} is used by alerts or dashboard but not defined in src/" for m in sorted(used - found)]
    return problems, f"{len(found)} metric families found in src/"


def main():
    commands = {
        "alerts": check_alerts, "dashboard": check_dashboard, "provisioning": check_provisioning,
        "compose": check_compose, "dockerfile": check_dockerfile, "kustomize": check_kustomize,
        "k8s-policy": check_k8s_policy, "metric-names": check_metric_names,
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        problems, summary = commands[sys.argv[1]](*sys.argv[2:])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as err:
        problems, summary = [f"cannot check: {type(err).__name__}: {err}"], ""
    for problem in problems:
        print(problem)
    if not problems and summary:
        print(summary)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
