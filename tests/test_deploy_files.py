"""The deployment files (docker/compose.yaml, docs/k8s/*.yaml) parse and agree with the code and
with each other, so they cannot rot silently: every SWAPRTC_* variable is a real setting with a
valid value, the workers' inference URL points at Triton's gRPC port, Services select pods that
exist, volumes and secrets are declared, and the repository Job's command line parses."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from swaprtc.cli import build_parser
from swaprtc.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker" / "compose.yaml"
K8S = sorted((ROOT / "docs" / "k8s").glob("*.yaml"))


def settings_from(env: dict[str, str]) -> Settings:
    """Settings built from a container's environment; unknown SWAPRTC_* names are errors."""
    known = {f"SWAPRTC_{name.upper()}" for name in Settings.__dataclass_fields__}
    unknown = sorted(k for k in env if k.startswith("SWAPRTC_") and k not in known)
    assert not unknown, f"not settings: {unknown}"
    return Settings.from_env(env)


def flag(args: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"--{name}="))


# --- docker compose ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_compose_services_have_valid_settings(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"swaprtc", "swaprtc-gpu", "triton", "swaprtc-triton"} <= set(services)
    for name, service in services.items():
        if name == "triton":
            continue
        settings_from({k: str(v) for k, v in service.get("environment", {}).items()})
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):  # a bind mount: the file ships beside the compose file
                assert (COMPOSE.parent / source).exists(), (name, volume)
            else:
                assert source in compose["volumes"], (name, volume)


def test_compose_triton_profile_wires_workers_to_triton(compose: dict[str, Any]) -> None:
    services = compose["services"]
    triton, worker = services["triton"], services["swaprtc-triton"]
    assert triton["profiles"] == ["triton"] and worker["profiles"] == ["triton"]
    settings = settings_from({k: str(v) for k, v in worker["environment"].items()})
    url = urlsplit(settings.inference_url)
    assert url.hostname == "127.0.0.1" and url.port == int(flag(triton["command"], "grpc-port"))
    # Same host: shared memory needs the IPC namespace shared on both sides.
    assert triton["ipc"] == "host" and worker["ipc"] == "host" and settings.inference_shared_memory == "auto"
    # Triton reads the repository from the models volume the workers' triton-repo writes into.
    repo = flag(triton["command"], "model-repository")
    (triton_volume,) = [v for v in triton["volumes"] if v.startswith("models:")]
    mount = triton_volume.split(":")[1]
    assert repo.startswith(mount + "/")
    assert worker["depends_on"]["triton"]["condition"] == "service_healthy"
    assert any(
        d.get("capabilities") == ["gpu"] for d in triton["deploy"]["resources"]["reservations"]["devices"]
    )
    # The header's repository command parses and writes into that volume.
    header = [
        line for line in COMPOSE.read_text().splitlines() if "triton-repo" in line and "run --rm" in line
    ]
    (command,) = header
    args = shlex.split(command.split("swaprtc swaprtc ", 1)[1])
    parsed = build_parser().parse_args(args)
    assert parsed.command == "triton-repo" and parsed.link
    worker_mount = next(v for v in services["swaprtc"]["volumes"] if v.startswith("models:")).split(":")[1]
    assert parsed.out == worker_mount + repo.removeprefix(mount)


# --- Kubernetes --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    assert K8S, "docs/k8s has no manifests"
    docs = []
    for path in K8S:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert doc and {"apiVersion", "kind", "metadata"} <= set(doc), path
            docs.append(doc)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc["spec"]["template"]["spec"]["containers"])


def container_env(container: dict[str, Any], secrets: dict[str, dict[str, Any]]) -> dict[str, str]:
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] in secrets, ref
            env[item["name"]] = str(secrets[ref["name"]]["stringData"][ref["key"]])
    return env


def test_k8s_manifests_reference_what_they_declare(manifests: list[dict[str, Any]]) -> None:
    workloads = [d for d in manifests if d["kind"] in {"Deployment", "DaemonSet", "Job"}]
    claims = by_kind(manifests, "PersistentVolumeClaim")
    secrets = by_kind(manifests, "Secret")
    for doc in workloads:
        pod = doc["spec"]["template"]
        if doc["kind"] != "Job":
            assert doc["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        for c in pod["spec"]["containers"]:
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes, (doc["metadata"]["name"], mount)
            container_env(c, secrets)  # every secret reference resolves
    for service in by_kind(manifests, "Service").values():
        selected = [
            d
            for d in workloads
            if service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected, f"Service {service['metadata']['name']} selects no pods"
        ports = {p["name"] for d in selected for c in containers(d) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)
    for ingress in by_kind(manifests, "Ingress").values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = by_kind(manifests, "Service")[backend["name"]]
                assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_k8s_workers_reach_triton_and_triton_serves_the_repository(manifests: list[dict[str, Any]]) -> None:
    deployments, services, secrets = (
        by_kind(manifests, "Deployment"),
        by_kind(manifests, "Service"),
        by_kind(manifests, "Secret"),
    )
    (worker,) = containers(deployments["swaprtc"])
    settings = settings_from(container_env(worker, secrets))
    assert settings.engine == "neural" and settings.inference_shared_memory == "off"
    assert settings.ice_servers and settings.ice_servers[0].startswith("turn:")  # media through TURN
    url = urlsplit(settings.inference_url)
    triton_service = services[str(url.hostname)]
    grpc = next(p for p in triton_service["spec"]["ports"] if p["port"] == url.port)
    (triton,) = containers(deployments["triton"])
    container_port = next(p["containerPort"] for p in triton["ports"] if p["name"] == grpc["targetPort"])
    assert container_port == int(flag(triton["args"], "grpc-port"))
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    # The Job writes the repository Triton loads, with the CLI's own parser.
    (job,) = by_kind(manifests, "Job").values()
    (writer,) = containers(job)
    assert writer["args"][0] == "swaprtc"
    parsed = build_parser().parse_args(writer["args"][1:])
    assert parsed.command == "triton-repo" and parsed.out == flag(triton["args"], "model-repository")
    settings_from(container_env(writer, secrets))
