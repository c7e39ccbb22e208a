"""docs/deployment-ray-k8s.md shows what the example files hold, and the Kubernetes
manifests (not run here: no cluster) are consistent with the server's shutdown."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "deployment-ray-k8s.md").read_text()
K8S = ROOT / "examples" / "k8s"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE, flags=re.DOTALL)


def manifests(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def test_yaml_on_the_page_is_the_files_in_examples_k8s() -> None:
    shown = {}
    for block in blocks("yaml"):
        first = block.splitlines()[0]
        match = re.match(r"# examples/k8s/(\S+) -- NOT RUN", first)
        assert match, f"a YAML block must name its file and say it is not run: {first!r}"
        shown[match.group(1)] = block
    assert set(shown) == {path.name for path in K8S.glob("*.yaml")}
    for name, block in shown.items():
        assert block == (K8S / name).read_text(), name


def test_python_on_the_page_is_in_the_ray_example() -> None:
    source = (ROOT / "examples" / "ray_serve_app.py").read_text()
    snippets = blocks("py")
    assert len(snippets) >= 2
    for snippet in snippets:
        assert snippet in source
    assert "@serve.ingress(build_router)" in PAGE


def test_grace_period_covers_prestop_and_graceful_shutdown() -> None:
    deployment = next(doc for doc in manifests("deployment.yaml") if doc["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    graceful = int(command[command.index("--timeout-graceful-shutdown") + 1])
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + graceful
    assert "ml_serving:router" in command


def test_probes_point_at_the_example_routes() -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    pytest.importorskip("numpy")
    from ml_serving import make_router

    from asgikit.testing import TestClient

    deployment = next(doc for doc in manifests("deployment.yaml") if doc["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    client = TestClient(make_router())  # lifespan not run: models not loaded yet
    assert client.get(container["livenessProbe"]["httpGet"]["path"]).status_code == 200
    readiness = container["readinessProbe"]["httpGet"]["path"]
    assert client.get(readiness).status_code == 503  # not ready until the models load
    assert container["startupProbe"]["httpGet"]["path"] == readiness


def test_hpa_scales_the_deployment_on_the_adapted_queue_metric() -> None:
    (hpa,) = manifests("hpa.yaml")
    deployment = next(doc for doc in manifests("deployment.yaml") if doc["kind"] == "Deployment")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    (rule,) = manifests("prometheus-adapter-rules.yaml")[0]["rules"]["custom"]
    assert rule["name"]["as"] == name
    assert name in rule["seriesQuery"]


def test_the_example_serves_the_metric_the_hpa_scales_on() -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    pytest.importorskip("numpy")
    pytest.importorskip("prometheus_client")
    from ml_serving import make_router

    from asgikit.testing import TestClient

    (hpa,) = manifests("hpa.yaml")
    name = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    with TestClient(make_router()) as client:  # the lifespan registers the batcher
        scrape = client.get("/metrics").text
    assert f'{name}{{batcher="predict"}} ' in scrape
