"""The production service image holds the service code only (issue 23): no devtools/, tests/ or bench/.

The root Dockerfile's last stage is what ``docker build`` (deploy.sh, Cloud Build) makes; docker-compose's
emulator setup and SendGrid stand-in run devtools from the Dockerfile's ``devtools`` stage."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
NEVER_SHIPPED = ("devtools", "tests", "bench")


def stages(dockerfile: Path) -> list[dict]:
    """Each stage: its base (image or earlier stage), name, and COPY instructions as (from-stage, sources)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if match := re.match(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$", line, re.I):
            found.append({"base": match[1], "name": match[2], "copies": []})
        elif re.match(r"^(COPY|ADD)\s", line, re.I):
            words = line.split()[1:]
            source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            paths = [w for w in words if not w.startswith("--")]
            found[-1]["copies"].append((source_stage, paths[:-1]))
    return found


def shipped_sources(dockerfile: Path, target: int = -1) -> set[str]:
    """Every build-context path whose files can reach the stage ``target`` (default: the last): copied
    into it or into a stage it is built on or copies from."""
    all_stages = stages(dockerfile)
    by_name = {s["name"]: s for s in all_stages if s["name"]}
    todo, seen, sources = [all_stages[target]], set(), set()
    while todo:
        stage = todo.pop()
        if id(stage) in seen:
            continue
        seen.add(id(stage))
        if stage["base"] in by_name:
            todo.append(by_name[stage["base"]])
        for source_stage, paths in stage["copies"]:
            if source_stage is None:
                sources.update(p.rstrip("/") for p in paths)
            elif source_stage in by_name:
                todo.append(by_name[source_stage])
    return sources


def test_the_production_image_holds_no_devtools_tests_or_bench():
    sources = shipped_sources(ROOT / "Dockerfile")
    assert {"imageflow", "services"} <= sources
    assert "." not in sources, "COPY . would ship the whole context"
    leaked = sorted(s for s in sources if s.split("/")[0] in NEVER_SHIPPED)
    assert leaked == [], f"the production image copies {leaked}"
    # the project installed into the venv (pip install .) packages none of them either
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not [p for p in include if p.rstrip("*").rstrip(".") in NEVER_SHIPPED]


def test_the_build_context_leaves_tests_and_bench_out():
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {"tests", "bench"} <= ignored


def test_no_service_code_imports_devtools():
    """What the production image leaves out is never needed at run time."""
    offenders = [str(path.relative_to(ROOT)) for folder in ("imageflow", "services", "functions")
                 for path in (ROOT / folder).rglob("*.py")
                 if re.search(r"^\s*(from|import)\s+devtools\b", path.read_text(), re.M)]
    assert offenders == []


def test_compose_runs_devtools_only_from_the_devtools_stage():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    devtools_stage = next(i for i, s in enumerate(stages(ROOT / "Dockerfile")) if s["name"] == "devtools")
    assert "devtools" in shipped_sources(ROOT / "Dockerfile", devtools_stage)
    for name, service in services.items():
        build = service.get("build") or {}
        if isinstance(build, str) or build.get("context") != ".":
            continue
        runs_devtools = "devtools." in " ".join(service.get("command") or [])
        assert (build.get("target") == "devtools") == runs_devtools, name
        if not runs_devtools:  # a service image is tagged as the production image it is
            assert "devtools" not in service["image"], name
