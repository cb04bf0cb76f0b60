"""Deployment past one machine: compose/docker-compose.yml and deploy/k8s/.

The compose file is checked by the real compose client (``docker-compose config``,
Debian's docker-compose package: scripts/services.sh installs it; no Docker engine
is needed for ``config``). The Kubernetes manifests are validated against the
Kubernetes API's JSON schemas bundled by ``kubernetes-validate`` (strict: unknown
fields are errors). KEDA's ScaledObject is not in those schemas and its CRD is not
shipped here: the fields its CRD requires (spec.scaleTargetRef.name,
spec.triggers[].type and string-valued .metadata) are checked by hand, and the
Redis list it counts is checked against a real publish through kombu.
Then both deployments are checked against the code they run: settings names,
worker command lines, queue names and the web's probe paths.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml
from flask import Flask
from redis import Redis

from ocrq.pipeline.app import create_celery_app
from ocrq.settings import Settings
from web import create_app
from workers.common import parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose" / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
SECRETS = {"OCRQ_WEBHOOK_SECRET": "s3cret", "OCRQ_FLOWER_AUTH": "admin:pw"}
K8S_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
WORKERS = ("worker-cpu", "worker-gpu", "worker-webhooks")


# --- compose -------------------------------------------------------------------------------
def _compose(*args: str, env: dict[str, str], stdin: str | None = None,
             ) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose not found: apt-get install docker-compose (scripts/services.sh)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OCRQ_")}
    return subprocess.run([tool, *args], input=stdin, capture_output=True, text=True,
                          timeout=120, env={**clean, **env})


@pytest.fixture(scope="module")
def compose_config() -> dict[str, Any]:
    """The file as compose resolves it: anchors merged, variables interpolated."""
    res = _compose("-f", str(COMPOSE), "config", env=SECRETS)
    assert res.returncode == 0, res.stderr
    return yaml.safe_load(res.stdout)


def test_compose_config_is_valid() -> None:
    res = _compose("-f", str(COMPOSE), "config", "--quiet", env=SECRETS)
    assert res.returncode == 0, res.stderr


def test_compose_refuses_to_start_without_a_webhook_secret() -> None:
    res = _compose("-f", str(COMPOSE), "config", "--quiet",
                   env={"OCRQ_FLOWER_AUTH": "admin:pw"})
    assert res.returncode != 0 and "OCRQ_WEBHOOK_SECRET" in res.stderr


def test_compose_validation_rejects_a_broken_file() -> None:
    broken = COMPOSE.read_text().replace("    stop_grace_period: 5m\n",
                                         "    stop_grace_period: 5m\n    replicas_x: 2\n", 1)
    res = _compose("-f", "-", "--project-directory", str(COMPOSE.parent), "config", "--quiet",
                   env=SECRETS, stdin=broken)
    assert res.returncode != 0 and "replicas_x" in res.stderr


def test_every_worker_service_scales(compose_config: dict[str, Any]) -> None:
    """``up --scale worker-cpu=N``: N containers of one service need distinct names and
    no host port each would claim."""
    services = compose_config["services"]
    for name in WORKERS:
        assert "container_name" not in services[name] and "ports" not in services[name], name
        command = services[name]["command"]
        assert command[:2] == ["python", "-m"] and command[2].startswith("workers."), name
        kind = command[2].removeprefix("workers.")
        args = parser(kind, "cpu", 1).parse_args(command[3:])  # the worker's own parser
        assert set(args.queues.split(",")) <= {"cpu", "gpu", "webhooks"}, name
    consumed = {q for n in WORKERS for q in _arg(services[n]["command"], "-Q").split(",")}
    assert consumed == {"cpu", "gpu", "webhooks"}  # every queue has its workers


def _arg(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_ocrq_services_share_one_environment(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    ours = [n for n, s in services.items() if str(s.get("image", "")).startswith("ocrq")]
    assert set(ours) >= {"migrate", "web", "flower", *WORKERS}
    base = services["web"]["environment"]
    for name in ours:  # the anchor's settings everywhere; a service may add its own
        env = services[name]["environment"]
        assert {k: env.get(k) for k in base} == base, name
        settings = Settings.from_env({k: str(v) for k, v in env.items()})  # all parse
        assert settings.webhook_secret == SECRETS["OCRQ_WEBHOOK_SECRET"]
        assert {k for k in env if k.startswith("OCRQ_")} <= _setting_names() | {
            "OCRQ_FLOWER_AUTH"}, name


def test_prometheus_scrapes_every_worker_service(compose_config: dict[str, Any]) -> None:
    prom = yaml.safe_load((COMPOSE.parent / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "ocrq-workers")
    names = {n for sd in job["dns_sd_configs"] for n in sd["names"]}
    assert names == set(WORKERS)
    port = int(compose_config["services"]["web"]["environment"]["OCRQ_METRICS_PORT"])
    assert {sd["port"] for sd in job["dns_sd_configs"]} == {port}


def _setting_names() -> set[str]:
    return {f"OCRQ_{name.upper()}" for name in Settings.__dataclass_fields__}


# --- Kubernetes ----------------------------------------------------------------------------
def _documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def _of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _documents() if d["kind"] == kind}


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    checked = 0
    for doc in _documents():
        assert "namespace" not in doc["metadata"], doc["metadata"]  # namespace-agnostic
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # not in Kubernetes' schemas: test_scaled_objects below
        kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 10


def test_the_schema_check_notices_a_mistake() -> None:
    web = _of_kind("Deployment")["ocrq-web"]
    container = web["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["paht"] = "/readyz"  # a typo: unknown field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, K8S_VERSIONS[-1], strict=True)
    del container["readinessProbe"]["httpGet"]["paht"]
    container["resources"]["limits"]["memory"] = ["1Gi"]  # wrong type
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, K8S_VERSIONS[-1], strict=True)


def _settings_from(deployment: dict[str, Any]) -> tuple[Settings, dict[str, str]]:
    """The settings a pod of ``deployment`` starts with (the Secret's keys filled in)."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    refs = {next(iter(r)): r[next(iter(r))]["name"] for r in container["envFrom"]}
    assert refs == {"configMapRef": "ocrq-settings", "secretRef": "ocrq-secrets"}
    env.update(_of_kind("ConfigMap")["ocrq-settings"]["data"])
    env.update({"OCRQ_DATABASE_URL": "mysql+pymysql://ocrq:pw@mariadb:3306/ocrq", **SECRETS})
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    return Settings.from_env(env), env


def test_pods_start_with_settings_ocrq_knows() -> None:
    config = _of_kind("ConfigMap")["ocrq-settings"]["data"]
    assert all(isinstance(v, str) for v in config.values())
    assert {k for k in config if k.startswith("OCRQ_")} <= _setting_names()
    for name, deployment in _of_kind("Deployment").items():
        settings, env = _settings_from(deployment)
        assert {k for k in env if k.startswith("OCRQ_")} <= _setting_names() | {
            "OCRQ_FLOWER_AUTH"}, name
        assert settings.auth == "keys" and settings.metrics_port == 9101


def test_worker_commands_parse_and_consume_the_configured_queues() -> None:
    consumed: set[str] = set()
    for name, deployment in _of_kind("Deployment").items():
        if name == "ocrq-web":
            continue
        settings, _ = _settings_from(deployment)
        command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
        kind = command[2].removeprefix("workers.")
        args = parser(kind, "", 1).parse_args(command[3:])
        queues = set(args.queues.split(","))
        assert queues <= {settings.queue_cpu, settings.queue_gpu, settings.queue_webhooks}
        consumed |= queues
        # -c set explicitly (os.cpu_count() in a pod is the node's), within the request.
        cpu = deployment["spec"]["template"]["spec"]["containers"][0]["resources"][
            "requests"]["cpu"]
        cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
        assert "-c" in command and (args.no_preload or args.concurrency <= max(1, cores)), name
        # The probes reach the metrics server the worker starts once Celery consumes.
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("startupProbe", "livenessProbe"):
            assert ports[container[probe]["httpGet"]["port"]] == settings.metrics_port, name
    assert consumed == {"cpu", "gpu", "webhooks"}


def test_the_gpu_worker_asks_for_one_gpu() -> None:
    container = _of_kind("Deployment")["ocrq-worker-gpu"]["spec"]["template"]["spec"][
        "containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["command"][2] == "workers.gpu"


def test_scaled_objects() -> None:
    """What KEDA's ScaledObject CRD requires, and a Redis list trigger that counts the
    queue its target consumes in the broker's database."""
    deployments = _of_kind("Deployment")
    scaled = _of_kind("ScaledObject")
    assert {so["spec"]["scaleTargetRef"]["name"] for so in scaled.values()} == {
        f"ocrq-{w}" for w in WORKERS}
    for name, so in scaled.items():
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        spec = so["spec"]
        target = deployments[spec["scaleTargetRef"]["name"]]
        settings, env = _settings_from(target)
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], name
        assert all(isinstance(spec[k], int) for k in ("pollingInterval", "cooldownPeriod"))
        (trigger,) = spec["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "redis" and all(isinstance(v, str) for v in meta.values())
        assert set(meta) == {"addressFromEnv", "databaseIndex", "listName", "listLength"}
        assert int(meta["listLength"]) > 0
        # KEDA reads addressFromEnv from the target's container (env and envFrom).
        host, _, port = env[meta["addressFromEnv"]].rpartition(":")
        assert host and int(port) > 0
        broker = urlparse(settings.broker_url)
        assert broker.scheme == "redis" and int(meta["databaseIndex"]) == int(broker.path[1:])
        command = target["spec"]["template"]["spec"]["containers"][0]["command"]
        assert _arg(command, "-Q").split(",") == [meta["listName"]], name


def test_a_queue_is_the_redis_list_keda_counts(web_settings: Settings) -> None:
    """KEDA's listName is the queue's name: a message Celery sends to a queue lands in
    the Redis list of that name (kombu's key for the default priority)."""
    s = web_settings
    app = create_celery_app(s)
    redis = Redis.from_url(s.broker_url)
    try:
        for queue in (s.queue_cpu, s.queue_gpu, s.queue_webhooks):
            app.send_task("ocrq.reorder", args=[{"job_id": "deploy-test"}], queue=queue)
            assert redis.llen(queue) == 1, queue
    finally:
        redis.close()


def test_probes_name_the_web_endpoints_and_selectors_match(web_app: Flask) -> None:
    routes = {r.rule for r in web_app.url_map.iter_rules()}
    web = _of_kind("Deployment")["ocrq-web"]
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["port"] in ports
    service = _of_kind("Service")["ocrq-web"]
    labels = web["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in ports
    deployments = _of_kind("Deployment")
    for name, pdb in _of_kind("PodDisruptionBudget").items():
        pod = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod.items(), name
        others = [n for n, d in deployments.items() if n != name and pdb["spec"]["selector"][
            "matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert not others, (name, others)


# --- /readyz answers within its deadlines ---------------------------------------------------
@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP server that accepts connections and never says a word: a peer behind a
    dropped network path, which a refused connection would not show."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:  # closed: the test is over
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in held:
        conn.close()


@pytest.mark.timeout(60)
def test_readyz_gives_up_on_silent_backends(web_settings: Settings, silent_port: int) -> None:
    url = f"127.0.0.1:{silent_port}"
    app = create_app(web_settings.with_(
        broker_url=f"redis://{url}/0", redis_url=f"redis://{url}/1",
        database_url=f"mysql+pymysql://ocrq:pw@{url}/ocrq"))
    resp = app.test_client().get("/readyz")  # without deadlines: waits forever
    assert resp.status_code == 503, resp.get_data(as_text=True)
    checks = resp.get_json()["checks"]
    assert set(checks) == {"broker", "redis", "database"}
    assert all(v.startswith("error: ") for v in checks.values()), checks


def test_the_intake_is_published_only_through_its_front(compose_config: dict[str, Any]) -> None:
    # An upload held open holds a web thread (granian sets no body deadline): the web
    # is reached only through nginx, which reads each body whole under a deadline
    # (compose/nginx.conf; tests/faults/test_slow_uploads.py runs it for real).
    services = compose_config["services"]
    assert not services["web"].get("ports")
    proxy = services["proxy"]
    assert [p["target"] for p in proxy["ports"]] == [8080]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in proxy["volumes"]}
    assert mounted == {str(COMPOSE.parent / "nginx.conf"): "/etc/nginx/nginx.conf"}
    conf = (COMPOSE.parent / "nginx.conf").read_text()
    assert "server web:8080;" in conf and "listen 8080;" in conf
    assert "proxy_request_buffering on;" in conf and "client_body_timeout" in conf
    # Never below the web's own limit (base64 JSON of the largest image): the web's
    # JSON 413 answers there, and nothing the web accepts is refused in front of it.
    limit_mib = int(re.search(r"client_max_body_size (\d+)m;", conf).group(1))  # type: ignore[union-attr]
    assert limit_mib * 1024 * 1024 >= create_app(Settings()).config["MAX_CONTENT_LENGTH"]


def test_the_ingress_buffers_bodies_up_to_the_webs_own_limit() -> None:
    ingress = _of_kind("Ingress")["ocrq-web"]
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    limit_mib = int(notes["nginx.ingress.kubernetes.io/proxy-body-size"].removesuffix("m"))
    assert limit_mib * 1024 * 1024 >= create_app(Settings()).config["MAX_CONTENT_LENGTH"]
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    service = path["backend"]["service"]
    web = _of_kind("Service")["ocrq-web"]
    assert service["name"] == web["metadata"]["name"]
    assert service["port"]["name"] in {p["name"] for p in web["spec"]["ports"]}
