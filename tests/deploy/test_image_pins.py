"""Every image ImageFlow builds on is pinned by digest, and Dependabot keeps the pins current
(issue 14): a tag can be re-pushed upstream, a digest cannot.

- Every FROM of every Dockerfile is ``image:tag@sha256:<64 hex>`` (the tag says what it is,
  the digest what is pulled), or a stage of the same file.
- docker-compose.yml runs the project's own images (built from those Dockerfiles) and pinned
  third-party ones; the one left on a tag is named below, with why.
- The Kubernetes manifests run only the project's images (deploy.sh sets them to the
  registry's ``:<git sha>`` build of the pinned Dockerfiles).
- .github/dependabot.yml covers every Dockerfile's folder, the compose file, pip and npm.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .k8s_support import ROOT, render_overlay

DIGEST = re.compile(r"^(?P<image>[a-z0-9][a-z0-9._/-]*(?::\d+)?/?[a-z0-9._/-]*):(?P<tag>[\w][\w.-]{0,127})"
                    r"@sha256:[0-9a-f]{64}$")
OWN_IMAGE = re.compile(r"^imageflow/[a-z-]+(:local)?$")
# Dev-only emulator image with no published digest found for this tag here; Dependabot's
# docker-compose updates propose its digest-pinned successor.
LEFT_ON_A_TAG = {"gcr.io/google.com/cloudsdktool/google-cloud-cli:528.0.0-emulators"}


def dockerfiles() -> list[Path]:
    skip = {"node_modules", ".venv", ".git", ".deploy", ".imageflow"}
    return sorted(p for p in ROOT.rglob("Dockerfile*") if not skip & set(p.relative_to(ROOT).parts))


def from_images(dockerfile: Path) -> list[tuple[str, str | None]]:
    """(image, stage name) of each FROM, with --platform and ARG-free forms only."""
    found = []
    for line in dockerfile.read_text().splitlines():
        match = re.match(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$", line, re.I)
        if match:
            found.append((match.group(1), match.group(2)))
    return found


def test_the_three_dockerfiles_are_found():
    assert {p.relative_to(ROOT).as_posix() for p in dockerfiles()} >= {
        "Dockerfile", "frontend/Dockerfile", "functions/email_notifier/Dockerfile"}


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_from_is_pinned_by_digest(dockerfile):
    images = from_images(dockerfile)
    assert images, f"{dockerfile}: no FROM line"
    stages = set()
    for image, stage in images:
        if image not in stages:  # FROM <earlier stage> is the file's own
            assert "$" not in image, f"{dockerfile}: FROM {image}: a build arg can bypass the pin"
            assert DIGEST.match(image), f"{dockerfile}: FROM {image} is not image:tag@sha256:<digest>"
        if stage:
            stages.add(stage)


def test_the_services_and_the_function_share_one_python_base():
    """One Python base image (tag and digest) for the services and the email function, so one
    Dependabot update moves both."""
    bases = set()
    for path in (ROOT / "Dockerfile", ROOT / "functions/email_notifier/Dockerfile"):
        stages = {stage for _, stage in from_images(path) if stage}
        bases |= {image for image, _ in from_images(path) if image not in stages}  # FROM <stage>: the file's own
    assert len(bases) == 1 and next(iter(bases)).startswith("python:3.11"), bases


def test_compose_runs_own_or_pinned_images():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name, spec in services.items():
        image = spec.get("image")
        if image is None:
            assert "build" in spec, name
            continue
        if OWN_IMAGE.match(image):
            assert "build" in spec, f"{name}: {image} is the project's, built here from a pinned Dockerfile"
            continue
        assert DIGEST.match(image) or image in LEFT_ON_A_TAG, f"{name}: {image} is neither pinned nor listed"
        assert not image.split("@")[0].endswith((":latest", ":stable")), image


def test_kubernetes_runs_only_the_projects_images(tmp_path):
    docs = render_overlay(tmp_path)
    images = set()
    for doc in docs:
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            images.add(c["image"])
    assert images, "no workload rendered"
    registry = re.compile(r"^[a-z0-9-]+-docker\.pkg\.dev/[a-z0-9-]+/imageflow/"
                          r"(image-handler|interaction-manager|image-processor|frontend):[\w.-]+$")
    assert {i for i in images if not registry.match(i)} == set(), "a third-party image in the manifests"


def test_dependabot_updates_every_pin():
    config = yaml.safe_load((ROOT / ".github/dependabot.yml").read_text())
    assert config["version"] == 2
    covered = {(u["package-ecosystem"], u["directory"].rstrip("/") or "/") for u in config["updates"]}
    for dockerfile in dockerfiles():
        folder = "/" + dockerfile.parent.relative_to(ROOT).as_posix()
        assert ("docker", "/" if folder == "/." else folder) in covered, dockerfile
    assert ("docker-compose", "/") in covered
    assert ("pip", "/") in covered and ("pip", "/functions/email_notifier") in covered
    assert ("npm", "/frontend") in covered
    for update in config["updates"]:
        assert update["schedule"]["interval"] in ("daily", "weekly", "monthly"), update
