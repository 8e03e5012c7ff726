"""Helpers for the deployment tests: render the kustomize trees, load the KEDA objects,
build the services' Flask apps on the local backends. Nothing here talks to a cluster."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "imageflow"

# What deploy.sh writes into its copy of the overlays for one project (scripts/deploy.sh, step 13).
SAMPLE_PARAMS = {
    "IMAGE_HANDLER_IMAGE": "europe-west1-docker.pkg.dev/acme-images/imageflow/image-handler:0123abcd",
    "INTERACTION_MANAGER_IMAGE": "europe-west1-docker.pkg.dev/acme-images/imageflow/interaction-manager:0123abcd",
    "IMAGE_PROCESSOR_IMAGE": "europe-west1-docker.pkg.dev/acme-images/imageflow/image-processor:0123abcd",
    "FRONTEND_IMAGE": "europe-west1-docker.pkg.dev/acme-images/imageflow/frontend:0123abcd",
    "GSA_DOMAIN": "acme-images.iam.gserviceaccount.com",
}
SAMPLE_CONFIG = {
    "GCP_PROJECT": "acme-images",
    "GCS_BUCKET": "acme-images-imageflow",
    "PUBLIC_BASE_URL": "https://images.acme.example",
}


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    return path


def kustomize(directory: Path) -> list[dict]:
    """`kubectl kustomize DIR`, parsed into documents."""
    proc = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kustomize {directory} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def copy_deploy_tree(dest: Path) -> Path:
    """A copy of k8s/ and keda/ (their relative layout kept) to write overlay inputs into,
    as deploy.sh does under .deploy/<project>/manifests."""
    for name in ("k8s", "keda"):
        shutil.copytree(ROOT / name, dest / name)
    return dest


def write_env(path: Path, values: dict[str, str]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))


def render_overlay(tmp: Path, https_domain: str | None = None, params: dict | None = None,
                   config: dict | None = None) -> list[dict]:
    """Render k8s/overlays/gke (or gke-https) with one project's values, as deploy.sh does."""
    tree = copy_deploy_tree(tmp)
    write_env(tree / "k8s/overlays/gke/params.env", params or SAMPLE_PARAMS)
    write_env(tree / "k8s/overlays/gke/config.env", config or SAMPLE_CONFIG)
    if https_domain:
        write_env(tree / "k8s/overlays/gke-https/params.env", {"DOMAIN": https_domain})
        return kustomize(tree / "k8s/overlays/gke-https")
    return kustomize(tree / "k8s/overlays/gke")


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def config_map(docs: list[dict]) -> dict[str, str]:
    """The data of the generated imageflow-config ConfigMap (its name carries a hash)."""
    found = [doc for doc in docs if doc["kind"] == "ConfigMap"
             and doc["metadata"]["name"].startswith("imageflow-config")]
    assert len(found) == 1, [doc["metadata"]["name"] for doc in found]
    return found[0]["data"]


def container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per pod"
    return containers[0]


def container_env(deployment: dict, docs: list[dict]) -> dict[str, str]:
    """The environment the container sees: envFrom the ConfigMap, then its own literal env."""
    env: dict[str, str] = {}
    spec = container(deployment)
    for source in spec.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(next(doc["data"] for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == name))
    for item in spec.get("env", []):
        if "value" in item:  # valueFrom (Secrets) is only known in the cluster
            env[item["name"]] = item["value"]
    return env


def keda_objects() -> dict[str, dict]:
    """The KEDA objects by kind, as committed."""
    objects = {}
    for path in sorted((ROOT / "keda").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc.get("kind") != "Kustomization":
            objects[doc["kind"]] = doc
    return objects


def service_routes(tmp: Path) -> dict[str, set[str]]:
    """URL rules of each service's Flask app, built on the local backends in ``tmp``."""
    from imageflow.settings import Settings
    from services.image_handler.app import create_app as handler_app
    from services.image_processor.app import create_app as processor_app
    from services.interaction_manager.app import create_app as manager_app

    settings = Settings.from_env({"IMAGEFLOW_DATA_DIR": str(tmp)})
    apps = {
        "image-handler": handler_app({"data_dir": settings.data_dir}),
        "interaction-manager": manager_app(settings),
        "image-processor": processor_app(settings),
    }
    return {name: {rule.rule for rule in app.url_map.iter_rules()} for name, app in apps.items()}
