"""scripts/deploy.sh: syntax and lint, the --dry-run plan checked command by command against
the code (topology, manifests, function), and the script run for real against stand-ins for
gcloud, kubectl and helm, to show it runs exactly its plan and is idempotent."""
from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from imageflow import topology
from imageflow.settings import Settings

from .k8s_support import ROOT, by_kind, config_map, copy_deploy_tree, kustomize

SCRIPT = ROOT / "scripts/deploy.sh"
PROJECT = "acme-images"
FAKE_PROJECT_NUMBER = "424242424242"
FAKE_ADDRESS = "203.0.113.7"


def run_script(*args, env=None, cwd=ROOT, script=SCRIPT, check=True):
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def plan(*args, env=None) -> str:
    return run_script("--project", PROJECT, "--tag", "v1", "--dry-run", *args, env=env).stdout


def commands(plan_text: str) -> list[list[str]]:
    """The plan's commands, as argument lists: comments, heredoc bodies and the helper
    function are skipped; `A >/dev/null 2>&1 || B` yields A then B."""
    out, lines, i = [], plan_text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("cat > "):
            while lines[i] != "EOF":
                i += 1
        elif line.startswith("ok_if_exists ()"):
            while lines[i] != "}":
                i += 1
        elif line and not line.startswith("#"):
            for part in line.split(" >/dev/null 2>&1 || "):
                words = shlex.split(part.removeprefix("ok_if_exists "))
                out.append(words)
        i += 1
    return out


def flags(words: list[str]) -> dict[str, str]:
    return dict(w[2:].split("=", 1) for w in words if w.startswith("--") and "=" in w)


def find(cmds, *prefix) -> list[list[str]]:
    return [c for c in cmds if c[:len(prefix)] == list(prefix)]


def heredocs(plan_text: str) -> dict[str, str]:
    return dict(re.findall(r"^cat > (\S+) <<EOF\n(.*?)\nEOF$", plan_text, re.S | re.M))


def index_of(cmds, *prefix) -> int:
    return next(i for i, c in enumerate(cmds) if c[:len(prefix)] == list(prefix))


# ---------------------------------------------------------------- syntax and lint -------
@pytest.mark.parametrize("path", ["scripts/deploy.sh", "scripts.sh"])
def test_bash_syntax(path):
    if not (ROOT / path).exists():
        pytest.skip(f"{path} not written yet")
    proc = subprocess.run(["bash", "-n", str(ROOT / path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("path", ["scripts/deploy.sh", "scripts.sh"])
def test_shellcheck(path):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install -y shellcheck)")
    if not (ROOT / path).exists():
        pytest.skip(f"{path} not written yet")
    proc = subprocess.run(["shellcheck", "--severity=style", str(ROOT / path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_help_and_bad_arguments():
    assert "--dry-run" in run_script("--help").stdout
    assert run_script(check=False, env={"PROJECT_ID": "", "GCP_PROJECT": ""}).returncode == 2
    # Without a project a dry run still shows the whole plan, for a placeholder id.
    anonymous = run_script("--dry-run", env={"PROJECT_ID": "", "GCP_PROJECT": ""}).stdout
    assert "# No --project given: your-project-id stands for your project id." in anonymous
    assert "gcloud functions deploy imageflow-email" in anonymous
    bad = run_script("--project", PROJECT, "--bogus", check=False)
    assert bad.returncode == 2 and "unknown argument: --bogus" in bad.stderr
    low = run_script("--project", PROJECT, "--dry-run", check=False, env={"MAX_DELIVERY_ATTEMPTS": "3"})
    assert low.returncode == 2 and "MAX_DELIVERY_ATTEMPTS" in low.stderr


# ---------------------------------------------------------------- the plan ---------------
def test_the_plan_is_a_runnable_script():
    text = plan()
    assert text.startswith("#!/usr/bin/env bash\n")
    proc = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_plan_enables_the_apis_first():
    cmds = commands(plan())
    first = next(c for c in cmds if c[0] in ("gcloud", "kubectl", "helm"))
    assert first[:3] == ["gcloud", "services", "enable"]
    for api in ("container", "pubsub", "firestore", "storage", "artifactregistry", "cloudbuild",
                "cloudfunctions", "run", "eventarc", "secretmanager", "monitoring", "iamcredentials"):
        assert f"{api}.googleapis.com" in first, api


def test_plan_creates_every_topic_and_subscription_of_the_topology():
    cmds = commands(plan())
    settings = Settings()
    created_topics = [c[4] for c in find(cmds, "gcloud", "pubsub", "topics", "create")]
    assert created_topics == topology.topics(settings)
    subs = {c[4]: flags(c) for c in find(cmds, "gcloud", "pubsub", "subscriptions", "create")}
    updates = {c[4]: flags(c) for c in find(cmds, "gcloud", "pubsub", "subscriptions", "update")}
    for config in topology.subscriptions(settings):
        if config.name == settings.topics.notifications_sub:
            assert config.name not in subs, "on GCP the function's Eventarc trigger owns this one"
            continue
        got = subs[config.name]
        assert got["topic"] == config.topic
        assert int(got["ack-deadline"]) == config.ack_deadline_seconds
        assert int(updates[config.name]["ack-deadline"]) == config.ack_deadline_seconds
        for source in (got, updates[config.name]):
            if config.dead_letter_topic:
                assert source["dead-letter-topic"] == config.dead_letter_topic
                assert int(source["max-delivery-attempts"]) == config.max_delivery_attempts
            else:
                assert "dead-letter-topic" not in source
    # Topics exist before their subscriptions.
    assert index_of(cmds, "gcloud", "pubsub", "topics", "create") < index_of(cmds, "gcloud", "pubsub", "subscriptions", "create")


def test_renamed_topics_and_settings_flow_to_pubsub_and_the_cluster():
    env = {"TASKS_TOPIC": "acme-tasks", "TASKS_SUBSCRIPTION": "acme-tasks-workers",
           "TASKS_DLQ_TOPIC": "acme-dead", "MAX_DELIVERY_ATTEMPTS": "7", "ACK_DEADLINE_SECONDS": "120"}
    text = plan(env=env)
    cmds = commands(text)
    settings = Settings.from_env(env)
    tasks = next(c for c in topology.subscriptions(settings) if c.topic == "acme-tasks")
    got = flags(next(c for c in find(cmds, "gcloud", "pubsub", "subscriptions", "create") if c[4] == tasks.name))
    assert (got["topic"], got["dead-letter-topic"], got["max-delivery-attempts"], got["ack-deadline"]) == \
        ("acme-tasks", "acme-dead", "7", "120")
    config = dict(line.split("=", 1) for line in heredocs(text)["k8s/overlays/gke/config.env"].splitlines())
    for var, value in env.items():
        assert config[var] == value, var


def test_dead_letter_iam_for_the_pubsub_service_agent():
    cmds = commands(plan())
    agent = "serviceAccount:service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    settings = Settings()
    dlq_publish = [c for c in find(cmds, "gcloud", "pubsub", "topics", "add-iam-policy-binding")
                   if c[4] == settings.topics.tasks_dlq and flags(c)["member"] == agent]
    assert [flags(c)["role"] for c in dlq_publish] == ["roles/pubsub.publisher"]
    source_ack = [c for c in find(cmds, "gcloud", "pubsub", "subscriptions", "add-iam-policy-binding")
                  if c[4] == settings.topics.tasks_sub and flags(c)["member"] == agent]
    assert [flags(c)["role"] for c in source_ack] == ["roles/pubsub.subscriber"]
    assert any(c[:3] == ["PROJECT_NUMBER=$(gcloud", "projects", "describe"] for c in cmds) or \
        'PROJECT_NUMBER="$(gcloud projects describe' in plan()


def test_workload_identity_bindings_match_the_manifests(tmp_path):
    cmds = commands(plan())
    accounts = by_kind(kustomize(ROOT / "k8s/base"), "ServiceAccount")
    bindings = {}
    for c in find(cmds, "gcloud", "iam", "service-accounts", "add-iam-policy-binding"):
        f = flags(c)
        if f["role"] == "roles/iam.workloadIdentityUser":
            bindings[f["member"]] = c[4]
    for name, account in accounts.items():
        annotated = account["metadata"].get("annotations", {}).get("iam.gke.io/gcp-service-account")
        member = f"serviceAccount:{PROJECT}.svc.id.goog[imageflow/{name}]"
        if annotated is None:
            assert member not in bindings, name
        else:
            assert bindings[member] == annotated.replace("PROJECT_ID", PROJECT), name
    keda_gsa = bindings[f"serviceAccount:{PROJECT}.svc.id.goog[keda/keda-operator]"]
    helm = find(cmds, "helm", "upgrade", "--install", "keda")[0]
    assert f"--set=podIdentity.gcp.gcpIAMServiceAccount={keda_gsa}" in helm
    assert "--set=podIdentity.gcp.enabled=true" in helm
    assert re.fullmatch(r"\d+\.\d+\.\d+", flags(helm)["version"]), "KEDA is pinned"
    roles = {(flags(c)["member"], flags(c)["role"]) for c in find(cmds, "gcloud", "projects", "add-iam-policy-binding")}
    assert (f"serviceAccount:{keda_gsa}", "roles/monitoring.viewer") in roles
    # Workload Identity's pool exists once the cluster does.
    assert index_of(cmds, "gcloud", "container", "clusters") < index_of(cmds, "gcloud", "iam", "service-accounts", "add-iam-policy-binding", keda_gsa)


def test_bucket_uniform_access_and_retention():
    text = plan("--retention-days", "14")
    cmds = commands(text)
    create = find(cmds, "gcloud", "storage", "buckets", "create")[0]
    assert create[4] == f"gs://{PROJECT}-imageflow"
    assert "--uniform-bucket-level-access" in create and "--public-access-prevention" in create
    update = find(cmds, "gcloud", "storage", "buckets", "update")[0]
    rules = yaml.safe_load(heredocs(text)[flags(update)["lifecycle-file"]])["rule"]
    assert {"action": {"type": "Delete"}, "condition": {"age": 14}} in rules


def test_firestore_database_and_the_indexes_of_list_jobs():
    cmds = commands(plan())
    create = find(cmds, "gcloud", "firestore", "databases", "create")[0]
    assert flags(create)["type"] == "firestore-native"
    indexes = [[f for f in c if f.startswith("--field-config=")]
               for c in find(cmds, "gcloud", "firestore", "indexes", "composite", "create")]
    assert ["--field-config=field-path=status,order=ascending",
            "--field-config=field-path=created_at,order=descending"] in indexes


def test_images_are_built_for_every_deployment_and_deployed_by_the_overlay():
    text = plan()
    files = heredocs(text)
    build = yaml.safe_load(next(body for path, body in files.items() if path.endswith("cloudbuild.yaml")))
    built = {step["id"]: step["args"] for step in build["steps"]}
    params = dict(line.split("=", 1) for line in files["k8s/overlays/gke/params.env"].splitlines())
    deployments = by_kind(kustomize(ROOT / "k8s/base"), "Deployment")
    assert set(built) == set(deployments)
    for name, args in built.items():
        image = args[args.index("-t") + 1]
        assert image == f"us-central1-docker.pkg.dev/{PROJECT}/imageflow/{name}:v1"
        assert params[f"{name.upper().replace('-', '_')}_IMAGE"] == image
        dockerfile = args[args.index("-f") + 1]
        assert (ROOT / dockerfile).parent.is_dir(), dockerfile
    assert set(build["images"]) == {args[args.index("-t") + 1] for args in built.values()}


def test_keda_is_installed_before_the_manifests_are_applied():
    cmds = commands(plan())
    assert index_of(cmds, "helm", "upgrade") < index_of(cmds, "kubectl", "apply", "-k", "k8s/overlays/gke")
    assert index_of(cmds, "gcloud", "builds", "submit") < index_of(cmds, "kubectl", "apply", "-k")
    https = commands(plan("--domain", "images.acme.example"))
    assert find(https, "kubectl", "apply", "-k", "k8s/overlays/gke-https")


def _names_read_by(path: Path) -> set[str]:
    """Environment variable names a module reads with os.environ.get/[...] or os.getenv."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = ast.unparse(node.func)
            if func in ("os.environ.get", "os.getenv", "environ.get"):
                names.add(node.args[0].value)
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ" \
                and isinstance(node.slice, ast.Constant):
            names.add(node.slice.value)
    return names


def test_email_function_deploy_matches_the_function():
    text = plan("--email-from", "Acme Images <images@acme.example>")
    cmds = commands(text)
    deploy = find(cmds, "gcloud", "functions", "deploy")[0]
    f = flags(deploy)
    source = ROOT / f["source"]
    main = source / "main.py"
    tree = ast.parse(main.read_text())
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert f["entry-point"] in functions
    assert (source / "requirements.txt").exists()
    assert f["trigger-topic"] == Settings().topics.notifications
    assert "--retry" in deploy and "--gen2" in deploy
    assert f["set-secrets"] == "SENDGRID_API_KEY=imageflow-sendgrid:latest"
    env = yaml.safe_load(heredocs(text)[f["env-vars-file"]])
    assert env["EMAIL_FROM"] == "Acme Images <images@acme.example>"
    assert set(env) | {"SENDGRID_API_KEY"} <= _names_read_by(main)


def test_secrets_stay_out_of_the_plan():
    secret = "SG.this-must-not-be-printed"
    text = plan(env={"SENDGRID_API_KEY": secret, "API_KEYS": "k-secret-1", "URL_SIGNING_SECRET": "s3cr3t"})
    for value in (secret, "k-secret-1", "s3cr3t"):
        assert value not in text
    assert '"$SENDGRID_API_KEY" | gcloud secrets versions add imageflow-sendgrid' in text


def test_public_base_url_is_the_domain_or_the_reserved_address():
    files = heredocs(plan("--domain", "images.acme.example"))
    assert "PUBLIC_BASE_URL=https://images.acme.example" in files["k8s/overlays/gke/config.env"].splitlines()
    assert files["k8s/overlays/gke-https/params.env"] == "DOMAIN=images.acme.example"
    files = heredocs(plan())
    assert "PUBLIC_BASE_URL=http://${INGRESS_IP}" in files["k8s/overlays/gke/config.env"].splitlines()


# ---------------------------------------------------------------- running it -------------
FAKE_GCLOUD = r'''#!/usr/bin/env bash
# Stand-in for gcloud: logs each call; a resource "exists" once created (a file in $FAKE_STATE).
printf 'gcloud' >> "$FAKE_LOG"; printf ' %q' "$@" >> "$FAKE_LOG"; echo >> "$FAKE_LOG"
words=(); verb=""
for a in "$@"; do
  case "$a" in
    --field-config=*) words+=("$a") ;;
    -*) ;;
    describe|create|create-auto) verb="$a" ;;
    *@*.iam.gserviceaccount.com) words+=("${a%%@*}") ;;  # describe takes the email, create the name
    *) words+=("$a") ;;
  esac
done
if [[ "$*" == *"secrets versions add"* ]]; then cat > "$FAKE_STATE/secret_value"; exit 0; fi
if [[ "$*" == *"secrets versions access"* ]]; then cat "$FAKE_STATE/secret_value" 2>/dev/null; exit; fi
if [[ "$*" == *"secrets versions describe"* ]]; then [[ -e "$FAKE_STATE/secret_value" ]]; exit; fi
key="$(printf '%s_' "${words[@]}" | tr '/ ' '__')"
case "$*" in
  "projects describe"*) echo "$FAKE_PROJECT_NUMBER"; exit 0 ;;
  "compute addresses describe"*--format*) [[ -e "$FAKE_STATE/$key" ]] && echo "$FAKE_ADDRESS"; exit 0 ;;
esac
case "$verb" in
  describe) [[ -e "$FAKE_STATE/$key" ]] ;;
  create|create-auto)
    if [[ -e "$FAKE_STATE/$key" ]]; then echo "ERROR: ALREADY_EXISTS: $key" >&2; exit 1; fi
    touch "$FAKE_STATE/$key" ;;
  *) exit 0 ;;
esac
'''
FAKE_KUBECTL = r'''#!/usr/bin/env bash
printf 'kubectl' >> "$FAKE_LOG"; printf ' %q' "$@" >> "$FAKE_LOG"; echo >> "$FAKE_LOG"
if [[ "$1 $2" == "apply -k" ]]; then exec "$REAL_KUBECTL" kustomize "$3" > "$FAKE_STATE/applied.yaml"; fi
if [[ "$1 $2" == "get namespace" ]]; then [[ -e "$FAKE_STATE/ns_$3" ]]; exit; fi
if [[ "$1 $2" == "create namespace" ]]; then touch "$FAKE_STATE/ns_$3"; fi
if [[ "$*" == *"apply -f -"* ]]; then cat > "$FAKE_STATE/secret.yaml"; fi
if [[ "$*" == *"--dry-run=client"* ]]; then echo "kind: Secret"; fi
exit 0
'''
FAKE_HELM = r'''#!/usr/bin/env bash
printf 'helm' >> "$FAKE_LOG"; printf ' %q' "$@" >> "$FAKE_LOG"; echo >> "$FAKE_LOG"
'''


@pytest.fixture
def sandbox(tmp_path):
    """A copy of the deployable tree, and stand-ins for the cloud CLIs on PATH."""
    real_kubectl = shutil.which("kubectl")
    if real_kubectl is None:
        pytest.skip("kubectl (for its kustomize) is not installed")
    tree = copy_deploy_tree(tmp_path / "repo")
    for name in ("scripts", "functions"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("gcloud", FAKE_GCLOUD), ("kubectl", FAKE_KUBECTL), ("helm", FAKE_HELM)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(tmp_path / "calls.log"),
           "FAKE_STATE": str(state), "REAL_KUBECTL": real_kubectl, "FAKE_PROJECT_NUMBER": FAKE_PROJECT_NUMBER,
           "FAKE_ADDRESS": FAKE_ADDRESS, "SENDGRID_API_KEY": "SG.test", "API_KEYS": "", "URL_SIGNING_SECRET": ""}
    return {"tree": tree, "env": env, "log": tmp_path / "calls.log", "state": state}


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_dry_run_runs_nothing_and_writes_nothing(sandbox):
    script = sandbox["tree"] / "scripts/deploy.sh"
    run_script("--project", PROJECT, "--tag", "v1", "--dry-run", script=script, env=sandbox["env"])
    assert _calls(sandbox["log"]) == []
    assert not (sandbox["tree"] / ".deploy").exists()
    assert not (sandbox["tree"] / "k8s/overlays/gke/params.env").exists()


def test_deploy_runs_its_plan_and_is_idempotent(sandbox):
    tree, env, log = sandbox["tree"], sandbox["env"], sandbox["log"]
    args = ("--project", PROJECT, "--tag", "v1")
    text = run_script(*args, "--dry-run", script=tree / "scripts/deploy.sh", env=env).stdout

    # The plan itself, run as a script against a fresh project.
    proc = subprocess.run(["bash", "-c", text], capture_output=True, text=True, env={**os.environ, **env},
                          cwd=tree, timeout=120)
    assert proc.returncode == 0, proc.stderr
    planned = _calls(log)
    log.unlink()
    shutil.rmtree(sandbox["state"]); sandbox["state"].mkdir()

    # deploy.sh for real against a fresh project: the same commands, in the same order.
    run_script(*args, script=tree / "scripts/deploy.sh", env=env)
    first = _calls(log)
    secret_steps = lambda calls: [c for c in calls if "secrets versions" not in c]  # noqa: E731
    assert secret_steps(first) == secret_steps(planned)
    creates = [c for c in first if re.search(r" (create|create-auto) ", c)]
    assert len(creates) >= 25, "a fresh project gets every resource"

    # What it applied: the project's images, address and subscription in valid manifests.
    applied = [d for d in yaml.safe_load_all((sandbox["state"] / "applied.yaml").read_text()) if d]
    assert config_map(applied)["PUBLIC_BASE_URL"] == f"http://{FAKE_ADDRESS}"
    assert config_map(applied)["GCP_PROJECT"] == PROJECT
    image = by_kind(applied, "Deployment")["image-processor"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"us-central1-docker.pkg.dev/{PROJECT}/imageflow/image-processor:v1"
    assert f"--member=serviceAccount:service-{FAKE_PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com" in \
        " ".join(first)

    # A second run finds everything in place: it creates nothing.
    log.unlink()
    run_script(*args, script=tree / "scripts/deploy.sh", env=env)
    again = _calls(log)
    recreated = [c for c in again if re.search(r" (create|create-auto) ", c) and "--dry-run=client" not in c]
    # Firestore indexes have no cheap existence check: re-creating answers ALREADY_EXISTS, accepted.
    assert [c for c in recreated if "firestore indexes composite create" not in c] == []
    assert len(recreated) == 4  # list_jobs (3) and iter_repairs (1)
    assert any("gcloud functions deploy" in c for c in again), "updates still roll out"
    assert not [c for c in again if "secrets versions add" in c], "an unchanged key adds no version"
    assert (sandbox["state"] / "secret_value").read_text() == env["SENDGRID_API_KEY"]


# ---------------------------------------------------------------- gcloud flags -----------
GCLOUD_VERBS = {"enable", "describe", "create", "create-auto", "update", "add-iam-policy-binding",
                "get-credentials", "submit", "deploy", "add"}


@pytest.mark.slow  # ~25 `gcloud --help` calls: 1-2 minutes on two cores
def test_every_gcloud_flag_exists_in_the_installed_sdk():
    """Each gcloud command of the plan, checked against `gcloud <command> --help` of the
    Cloud SDK installed here (no project, no network): a misspelled flag fails here, not
    halfway through a real deploy."""
    from concurrent.futures import ThreadPoolExecutor

    if shutil.which("gcloud") is None:
        pytest.skip("the Google Cloud CLI is not installed")
    wanted: dict[tuple, set] = {}
    for c in commands(plan("--domain", "images.acme.example")):
        if c[0] != "gcloud":
            continue
        words = [w for w in c[1:] if not w.startswith("-")]
        verb = next(i for i, w in enumerate(words) if w in GCLOUD_VERBS)
        wanted.setdefault(tuple(words[:verb + 1]), set()).update(
            w.split("=")[0] for w in c if w.startswith("--"))
    env = {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "PAGER": "cat"}

    def unknown(item):
        path, used = item
        out = subprocess.run(["gcloud", *path, "--help"], capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0 and "SYNOPSIS" in out.stdout, (path, out.stderr[-500:])
        return " ".join(path), sorted(used - set(re.findall(r"--[a-z0-9-]+", out.stdout)))

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(pool.map(unknown, wanted.items()))
    assert len(results) >= 20
    assert {path: flags for path, flags in results.items() if flags} == {}
