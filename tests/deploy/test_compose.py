"""docker-compose.yml and the Dockerfiles, checked without a Docker engine: the compose file
validates, images are pinned, multi-stage, slim and non-root, and every variable the compose
file sets is one the code reads, under the names of the k8s ConfigMap. (The containers'
commands are run directly on the emulators in tests/integration/gcp/test_container_commands.py.)"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from imageflow.settings import ENV_NAMES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILES = [ROOT / "Dockerfile", ROOT / "functions/email_notifier/Dockerfile", ROOT / "frontend/Dockerfile"]
# Read by the client libraries, the emulators' images or nginx's template, not by our code.
EXTERNAL_NAMES = {"PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "STORAGE_EMULATOR_HOST",
                  "GOOGLE_APPLICATION_CREDENTIALS", "IMAGE_HANDLER_URL"}
_READ = re.compile(r"""(?:environ|env)(?:\.get)?\s*[\(\[]\s*["']([A-Z][A-Z0-9_]{2,})["']""")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def names_the_code_reads() -> set[str]:
    """Every variable name the Python code looks up (settings and direct reads)."""
    names = set(ENV_NAMES)
    for folder in ("imageflow", "services", "functions"):
        for source in (ROOT / folder).rglob("*.py"):
            names.update(_READ.findall(source.read_text()))
    return names


def config_env() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / "k8s/base/config.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def stage_bases(dockerfile: Path) -> list[str]:
    """The image each stage starts from; ``FROM <earlier stage>`` resolved to that stage's image."""
    named, bases = {}, []
    for match in re.finditer(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", dockerfile.read_text(), re.MULTILINE | re.I):
        base = named.get(match[1], match[1])
        bases.append(base)
        if match[2]:
            named[match[2]] = base
    return bases


def final_stage(dockerfile: Path) -> list[str]:
    """The last stage's lines, with those of the stages it is built on (``FROM runtime``) before them."""
    lines = dockerfile.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    stages = {}
    for start, end in zip(starts, starts[1:] + [len(lines)]):
        words = lines[start].split()
        stages[words[3] if len(words) > 3 and words[2].upper() == "AS" else start] = lines[start:end]
    chain = list(stages.values())[-1]
    while chain[0].split()[1] in stages:
        chain = stages[chain[0].split()[1]] + chain
    return chain


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose not installed (apt-get install docker-compose)")
def test_compose_file_validates():
    result = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_compose_runs_every_part_of_the_system():
    services = compose()["services"]
    assert {"pubsub", "firestore", "gcs", "mailpit", "setup", "image-handler", "interaction-manager",
            "image-processor", "email-function", "frontend"} <= set(services)
    for name, service in services.items():
        if "build" in service:
            build = service["build"]
            dockerfile = ROOT / build["context"] / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"


def test_compose_images_are_pinned():
    for name, service in compose()["services"].items():
        image = service["image"]
        repo, _, tag = image.split("@sha256:")[0].rpartition(":")  # a digest pin keeps its tag (test_image_pins.py)
        assert repo and tag and tag != "latest", f"{name}: {image} is not pinned"
        if tag == "local":  # built here from this checkout
            assert "build" in service, f"{name}: {image} is neither pinned nor built"
        else:
            assert re.search(r"\d+\.\d+", tag), f"{name}: {image} has no version tag"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfiles_are_multistage_slim_pinned_and_non_root(dockerfile):
    text = dockerfile.read_text()
    bases = stage_bases(dockerfile)
    assert len(bases) >= 2, "multi-stage: build tools stay out of the final image"
    for base in bases:
        assert re.search(r":\S*\d+\.\d+", base) and not base.endswith(":latest"), f"unpinned base {base}"
    assert any(word in bases[-1] for word in ("slim", "alpine", "unprivileged")), f"final base {bases[-1]}"
    users = [line.split()[1] for line in final_stage(dockerfile) if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the final stage runs as a non-root user"
    for cmd in re.findall(r"^CMD .*", text, re.MULTILINE):  # (frontend: nginx's own CMD)
        assert cmd.startswith("CMD ["), "exec-form CMD, so signals reach the process"


def test_python_images_run_as_the_uid_the_k8s_manifests_expect():
    for dockerfile in DOCKERFILES[:2]:
        assert "USER 10001:10001" in final_stage(dockerfile), dockerfile


def test_every_compose_variable_is_read_by_the_code():
    known = names_the_code_reads() | EXTERNAL_NAMES
    for name, service in compose()["services"].items():
        unknown = set(service.get("environment") or {}) - known
        assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"


def test_compose_uses_the_configmap_names_and_bus_topology():
    env = compose()["x-imageflow-env"]
    configmap = config_env()
    missing = set(configmap) - set(env)
    assert not missing, f"ConfigMap settings absent from docker-compose.yml: {sorted(missing)}"
    assert env["IMAGEFLOW_BACKEND"] == configmap["IMAGEFLOW_BACKEND"]
    # Topic and subscription names are imageflow/topology.py's: compose does not restate them.
    from imageflow.topology import Topics
    for service in compose()["services"].values():
        assert not set(Topics.ENV.values()) & set(service.get("environment") or {})


def test_the_link_signer_and_verifier_get_the_same_keys():
    """The interaction manager signs the emailed zip link, the image-handler verifies it: both read
    API_KEYS and URL_SIGNING_SECRET from the same shell variables (nothing else gets them)."""
    services = compose()["services"]
    keys = ("API_KEYS", "URL_SIGNING_SECRET")
    handler, manager = ({key: (services[name].get("environment") or {}).get(key) for key in keys}
                        for name in ("image-handler", "interaction-manager"))
    assert handler == manager == {key: f"${{{key}:-}}" for key in keys}
    for name, service in services.items():
        if name not in ("image-handler", "interaction-manager"):
            assert not set(keys) & set(service.get("environment") or {}), name


def test_one_dockerfile_builds_every_service():
    """The three services are one recipe with ARG SERVICE; compose builds each with its port."""
    services = compose()["services"]
    built = {}
    for name in ("image-handler", "interaction-manager", "image-processor"):
        build = services[name]["build"]
        assert build["context"] == "." and build.get("dockerfile", "Dockerfile") == "Dockerfile", name
        built[name] = build["args"]
    assert {name: args["SERVICE"] for name, args in built.items()} == {n: n for n in built}
    assert {name: args["PORT"] for name, args in built.items()} == {
        "image-handler": services["image-handler"]["environment"]["IMAGEFLOW_PORT"],
        "interaction-manager": services["interaction-manager"]["environment"]["PORT"],
        "image-processor": services["image-processor"]["environment"]["PORT"]}
    assert not list((ROOT / "services").glob("*/Dockerfile")), "no per-service copies"
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG SERVICE$", text, re.M) and "EXPOSE ${PORT}" in text


def test_service_ports_and_push_endpoint_follow_the_contract():
    services = compose()["services"]
    assert services["image-handler"]["environment"]["IMAGEFLOW_PORT"] == "8080"
    assert services["interaction-manager"]["environment"]["PORT"] == "8081"
    assert services["image-processor"]["environment"]["PORT"] == "8082"
    assert services["email-function"]["environment"]["PORT"] == "8083"
    assert compose()["x-imageflow-env"]["NOTIFICATIONS_PUSH_ENDPOINT"] == "http://email-function:8083/"
    function_cmd = (ROOT / "functions/email_notifier/Dockerfile").read_text()
    assert "--target notify --signature-type cloudevent" in function_cmd


def _locked(lock: str = "requirements.lock") -> dict[str, tuple[str, int]]:
    """A pip-compile lock: name -> (version, number of hashes)."""
    text = (ROOT / lock).read_text()
    entries = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if match:
            entries[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = (match.group(2), block.count("--hash=sha256:"))
    return entries


def test_the_images_install_a_hashed_lock_of_every_dependency():
    """Transitive dependencies are locked with hashes (a compromised or re-published release
    fails the build), the lock keeps pyproject.toml's pins, and it is what the tests run on."""
    import tomllib
    from importlib import metadata

    locked = _locked()
    assert locked and all(hashes for _, hashes in locked.values()), "every requirement has its hashes"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"] + project["optional-dependencies"]["gcp"]:
        name, _, version = requirement.partition("==")
        assert locked[name.lower()][0] == version, f"requirements.lock is stale for {name}: re-run pip-compile"
    for name, (version, _) in locked.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        assert installed == version, f"{name}: tests run {installed}, the images get {version}"
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps -r requirements.lock" in text
    assert 'pip install --no-deps ".[gcp]"' in text, "the project itself adds nothing unlocked"


def test_the_tests_run_on_the_same_hashed_lock_as_the_images():
    """requirements-dev.lock (what ./scripts.sh installs) keeps every version of requirements.lock
    and pyproject.toml's test pins, and every package in the test environment comes from it: a
    release upstream cannot change what the tests run on."""
    import tomllib
    from importlib import metadata

    images, dev = _locked(), _locked("requirements-dev.lock")
    assert all(hashes for _, hashes in dev.values()), "every requirement has its hashes"
    for name, (version, _) in images.items():
        assert dev[name][0] == version, f"{name}: requirements-dev.lock has {dev[name][0]}, the images {version}"
    test_pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    for requirement in test_pins:
        name, _, version = requirement.partition("==")
        assert dev[name.lower()][0] == version, f"requirements-dev.lock is stale for {name}: ./scripts.sh lock"
    for dist in metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if name in ("imageflow", "pip"):
            continue
        assert name in dev, f"{name} is installed but not locked in requirements-dev.lock"
        assert dist.version == dev[name][0], f"{name}: tests run {dist.version}, the lock says {dev[name][0]}"
    script = (ROOT / "scripts.sh").read_text()
    assert "--require-hashes --no-deps -r requirements-dev.lock" in script
    assert "--no-deps --no-build-isolation -e ." in script
