"""scripts/deploy.sh: syntax and lint, the --dry-run plan checked command by command against
the code (topology, manifests, function), and the script run for real against stand-ins for
gcloud, kubectl and helm, to show it runs exactly its plan and is idempotent."""
from __future__ import annotations

import ast
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imageflow import topology
from imageflow.bus import SubscriptionConfig
from imageflow.settings import Settings

from .k8s_support import ROOT, by_kind, config_map, copy_deploy_tree, kustomize

SCRIPT = ROOT / "scripts/deploy.sh"
PROJECT = "acme-images"
FAKE_PROJECT_NUMBER = "424242424242"
FAKE_ADDRESS = "203.0.113.7"
SENDER = "Acme Images <images@acme.example>"
MANIFESTS = f".deploy/{PROJECT}/manifests"  # deploy.sh's copy of k8s/ and keda/ with the project's values


def run_script(*args, env=None, cwd=ROOT, script=SCRIPT, check=True):
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def plan(*args, env=None) -> str:
    sender = () if "--email-from" in args else ("--email-from", SENDER)
    return run_script("--project", PROJECT, "--tag", "v1", "--dry-run", *sender, *args, env=env).stdout


def commands(plan_text: str) -> list[list[str]]:
    """The plan's commands, as argument lists: comments, heredoc bodies and the helper
    function are skipped; `A >/dev/null 2>&1 || B` yields A then B."""
    out, lines, i = [], plan_text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("cat > "):
            while lines[i] != "EOF":
                i += 1
        elif line.startswith(("ok_if_exists ()", "alert_policy_exists ()", "retry_propagation ()",
                              "delete_alert_policies ()")):
            while lines[i] != "}":
                i += 1
        elif line.startswith("if ") and " >/dev/null 2>&1; then" in line:  # teardown: `if CHECK; then DELETE; fi`
            check, _, rest = line.removeprefix("if ").partition(" >/dev/null 2>&1; then")
            out.append(shlex.split(check))
            if rest.strip():
                out.append(shlex.split(rest.strip().removesuffix("; fi")))
        elif line == "fi":
            pass
        elif line and not line.startswith("#"):
            for part in line.split(" >/dev/null 2>&1 || "):
                words = shlex.split(part.removeprefix("ok_if_exists ").removeprefix("retry_propagation "))
                out.append(words)
        i += 1
    return out


def flags(words: list[str]) -> dict[str, str]:
    return dict(w[2:].split("=", 1) for w in words if w.startswith("--") and "=" in w)


def find(cmds, *prefix) -> list[list[str]]:
    return [c for c in cmds if c[:len(prefix)] == list(prefix)]


def heredocs(plan_text: str) -> dict[str, str]:
    """The files the plan writes (unquoted heredocs: backslashes are escaped in the plan)."""
    return {path: body.replace("\\\\", "\\")
            for path, body in re.findall(r"^cat > (\S+) <<EOF\n(.*?)\nEOF$", plan_text, re.S | re.M)}


def captured(plan_text: str, variable: str) -> list[str]:
    """The command whose output the plan assigns to ``variable`` (``VAR="$(command)"``)."""
    [inner] = re.findall(rf'^{variable}="\$\((.*)\)"$', plan_text, re.M)
    return shlex.split(inner)


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


def setup_command(cmds) -> tuple[dict[str, str], list[str]]:
    """The plan's run of the topology setup command: its environment and its arguments."""
    [command] = [c for c in cmds if c[0] == "env" and "imageflow.setup" in c]
    split = next(i for i, w in enumerate(command[1:], 1) if "=" not in w)
    return dict(w.split("=", 1) for w in command[1:split]), command[split:]


def test_plan_creates_the_topology_with_the_setup_command():
    """deploy.sh does not restate the topology in gcloud flags: it runs imageflow/topology.py's
    setup command (tests/integration/gcp/test_deploy_topology.py runs it on the emulator)."""
    cmds = commands(plan())
    assert not find(cmds, "gcloud", "pubsub", "topics", "create")
    assert not find(cmds, "gcloud", "pubsub", "subscriptions", "create")
    env, argv = setup_command(cmds)
    assert argv == ["python3", "-m", "imageflow.setup", "ensure", "--no-email-subscription"]
    assert env["IMAGEFLOW_BACKEND"] == "gcp" and env["GCP_PROJECT"] == PROJECT
    # Issue 27 M4: billed to the project it sets up, not to the credentials' quota project
    # (google.auth reads GOOGLE_CLOUD_QUOTA_PROJECT for application-default credentials).
    assert env["GOOGLE_CLOUD_QUOTA_PROJECT"] == PROJECT
    from google.auth import environment_vars
    assert environment_vars.GOOGLE_CLOUD_QUOTA_PROJECT == "GOOGLE_CLOUD_QUOTA_PROJECT"
    settings = Settings.from_env(env)
    assert settings.topics == Settings().topics
    assert (settings.ack_deadline_seconds, settings.max_delivery_attempts) == (60, 5)
    # The topics exist before any IAM binding on them.
    assert cmds.index(next(c for c in cmds if c[0] == "env")) < \
        index_of(cmds, "gcloud", "pubsub", "topics", "add-iam-policy-binding")


def test_renamed_topics_and_settings_flow_to_pubsub_and_the_cluster():
    env = {"TASKS_TOPIC": "acme-tasks", "TASKS_SUBSCRIPTION": "acme-tasks-workers",
           "TASKS_DLQ_TOPIC": "acme-dead", "MAX_DELIVERY_ATTEMPTS": "7", "ACK_DEADLINE_SECONDS": "120"}
    text = plan(env=env)
    cmds = commands(text)
    setup_env, _ = setup_command(cmds)
    tasks = next(c for c in topology.subscriptions(Settings.from_env(setup_env)) if c.topic == "acme-tasks")
    assert (tasks.name, tasks.dead_letter_topic, tasks.max_delivery_attempts, tasks.ack_deadline_seconds) == \
        ("acme-tasks-workers", "acme-dead", 7, 120)
    binding = [c for c in find(cmds, "gcloud", "pubsub", "subscriptions", "add-iam-policy-binding")
               if "image-processor" in flags(c)["member"]]
    assert [c[4] for c in binding] == ["acme-tasks-workers"]
    config = dict(line.split("=", 1) for line in heredocs(text)[f"{MANIFESTS}/k8s/overlays/gke/config.env"].splitlines())
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


AGENT = "serviceAccount:service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"


def deployed_subscriptions(cmds) -> list[SubscriptionConfig]:
    """Every subscription the deploy leaves on GCP, as configured: those of the setup command
    (imageflow/topology.py, with the environment the plan gives it), and the email function's
    Eventarc subscription as the plan's `subscriptions update` leaves it."""
    setup_env, argv = setup_command(cmds)
    settings = Settings.from_env(setup_env)
    made = topology.subscriptions(settings, email_subscription="--no-email-subscription" not in argv)
    [deploy] = find(cmds, "gcloud", "functions", "deploy")
    updates = {c[4]: flags(c) for c in find(cmds, "gcloud", "pubsub", "subscriptions", "update")}
    trigger = updates.get("${EMAIL_TRIGGER_SUBSCRIPTION}", {})
    made.append(SubscriptionConfig(
        "${EMAIL_TRIGGER_SUBSCRIPTION}", flags(deploy)["trigger-topic"],
        dead_letter_topic=trigger.get("dead-letter-topic"),
        max_delivery_attempts=int(trigger.get("max-delivery-attempts", 0)),
        min_backoff_seconds=float(trigger.get("min-retry-delay", "0s").rstrip("s")),
        max_backoff_seconds=float(trigger.get("max-retry-delay", "0s").rstrip("s"))))
    assert [c for c in updates if c != "${EMAIL_TRIGGER_SUBSCRIPTION}"] == [], "only the trigger's is set by gcloud"
    return made


def test_every_subscription_dead_letters_and_backs_off_with_the_agents_grants():
    """Issue 13: no message is redelivered in a loop on GCP. Every subscription of a work topic
    (anything but a dead-letter topic) has a dead-letter topic, a bounded number of attempts and
    a retry backoff, and Pub/Sub's service agent may publish to the DLQ and ack the source.
    A subscription added without one, here or in topology.py, fails this test."""
    text = plan()
    cmds = commands(text)
    subs = deployed_subscriptions(cmds)
    dead_letter_topics = {s.dead_letter_topic for s in subs if s.dead_letter_topic}
    work = [s for s in subs if s.topic not in dead_letter_topics]
    assert {s.topic for s in work} >= {"imageflow-jobs", "imageflow-tasks", "imageflow-results",
                                       "imageflow-notifications", "imageflow-uploads"}
    assert "${EMAIL_TRIGGER_SUBSCRIPTION}" in {s.name for s in work}
    for sub in work:
        assert sub.dead_letter_topic, f"{sub.name} has no dead-letter topic"
        assert 5 <= sub.max_delivery_attempts <= 100, sub.name
        assert 0 < sub.min_backoff_seconds <= sub.max_backoff_seconds <= 600, f"{sub.name} has no retry backoff"
    grants = {(c[2], c[4], flags(c)["role"]) for c in cmds
              if c[:2] == ["gcloud", "pubsub"] and c[3] == "add-iam-policy-binding" and flags(c).get("member") == AGENT}
    for sub in work:
        assert ("topics", sub.dead_letter_topic, "roles/pubsub.publisher") in grants, sub.dead_letter_topic
        assert ("subscriptions", sub.name, "roles/pubsub.subscriber") in grants, sub.name
    # Each dead-letter topic is created by the setup command, and kept on a subscription.
    settings = Settings.from_env(setup_command(cmds)[0])
    assert dead_letter_topics <= set(topology.topics(settings))
    assert dead_letter_topics <= {s.topic for s in subs}
    # The trigger's subscription is found after the function is deployed, before it is updated.
    deploy = index_of(cmds, "gcloud", "functions", "deploy")
    found = next(i for i, c in enumerate(cmds) if c[0].startswith("EMAIL_TRIGGER_SUBSCRIPTION="))
    assert deploy < found < index_of(cmds, "gcloud", "pubsub", "subscriptions", "update")
    assert 'EMAIL_TRIGGER="$(gcloud functions describe imageflow-email --v2' in text
    assert "'--format=value(transport.pubsub.subscription)')\"" in text


def test_renamed_notifications_topic_moves_the_email_dead_letter_topic_too():
    cmds = commands(plan(env={"NOTIFICATIONS_TOPIC": "acme-done"}))
    [update] = find(cmds, "gcloud", "pubsub", "subscriptions", "update")
    assert flags(update)["dead-letter-topic"] == Settings.from_env({"NOTIFICATIONS_TOPIC": "acme-done"}).topics.notifications_dlq


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


def test_the_bucket_takes_the_pages_resumable_uploads_from_its_own_origin_only():
    """The page PUTs large files to their Cloud Storage sessions in Content-Range chunks and reads the
    session's Range answer: the bucket's CORS allows exactly that, for the site's origin."""
    text = plan("--domain", "photos.example.com")
    [update] = [c for c in find(commands(text), "gcloud", "storage", "buckets", "update") if "cors-file" in flags(c)]
    assert update[4] == f"gs://{PROJECT}-imageflow"
    [rule] = json.loads(heredocs(text)[flags(update)["cors-file"]])
    assert rule["origin"] == ["https://photos.example.com"] and rule["method"] == ["PUT"]
    assert {"Content-Type", "Content-Range", "Range"} <= set(rule["responseHeader"])


def test_firestore_database_and_the_indexes_of_list_jobs():
    cmds = commands(plan())
    create = find(cmds, "gcloud", "firestore", "databases", "create")[0]
    assert flags(create)["type"] == "firestore-native"
    indexes = [[f for f in c if f.startswith("--field-config=")]
               for c in find(cmds, "gcloud", "firestore", "indexes", "composite", "create")]
    order = ["--field-config=field-path=created_at,order=descending",
             "--field-config=field-path=job_id,order=descending"]
    for equalities in ([], ["status"], ["owner"], ["owner", "status"]):
        assert [f"--field-config=field-path={f},order=ascending" for f in equalities] + order in indexes


def test_monotonic_image_fields_nobody_queries_are_exempt_from_indexing():
    """Issue 27 M3: an indexed, monotonically increasing field caps writes near 500/s. The images'
    expires_at (TTL) and updated_at are exempt; seq, which page_images orders by, is not."""
    cmds = commands(plan())
    exempt = {(c[5], flags(c)["collection-group"]) for c in find(cmds, "gcloud", "firestore", "indexes", "fields", "update")
              if "--disable-indexes" in c}
    assert exempt == {("expires_at", "images"), ("updated_at", "images")}
    store = (ROOT / "imageflow/jobstore/firestore.py").read_text()
    for field, _ in exempt:
        assert not re.search(rf'(FieldFilter|order_by)\("{field}"', store), f"{field} is queried: it needs its index"
    assert 'order_by("seq")' in store


def test_images_are_built_for_every_deployment_and_deployed_by_the_overlay():
    text = plan()
    files = heredocs(text)
    build = yaml.safe_load(next(body for path, body in files.items() if path.endswith("cloudbuild.yaml")))
    built = {step["id"]: step["args"] for step in build["steps"]}
    params = dict(line.split("=", 1) for line in files[f"{MANIFESTS}/k8s/overlays/gke/params.env"].splitlines())
    deployments = by_kind(kustomize(ROOT / "k8s/base"), "Deployment")
    assert set(built) == set(deployments)
    cmds = commands(text)
    for name, args in built.items():
        image = args[args.index("-t") + 1]
        assert image == f"us-central1-docker.pkg.dev/{PROJECT}/imageflow/{name}:v1"
        # Issue 27 M5: deployed by the digest the registry gave the tag just built, not by the tag.
        variable = f"{name.upper().replace('-', '_')}_DIGEST"
        describe = captured(text, variable)
        assert describe[:5] == ["gcloud", "artifacts", "docker", "images", "describe"]
        assert describe[5] == image and flags(describe)["format"] == "value(image_summary.digest)"
        assert text.index("gcloud builds submit") < text.index(f'{variable}="$(gcloud')
        assert params[f"{name.upper().replace('-', '_')}_IMAGE"] == \
            f"us-central1-docker.pkg.dev/{PROJECT}/imageflow/{name}@${{{variable}}}"
        assert f'[[ "${{{variable}}}" =~ ^sha256:[0-9a-f]{{64}}$ ]] ||' in text, "no manifest without a digest"
        dockerfile = args[args.index("-f") + 1]
        assert (ROOT / dockerfile).is_file(), dockerfile
    assert set(build["images"]) == {args[args.index("-t") + 1] for args in built.values()}


def test_keda_is_installed_before_the_manifests_are_applied():
    cmds = commands(plan())
    assert index_of(cmds, "helm", "upgrade") < index_of(cmds, "kubectl", "apply", "-k", f"{MANIFESTS}/k8s/overlays/gke-https")
    assert index_of(cmds, "gcloud", "builds", "submit") < index_of(cmds, "kubectl", "apply", "-k")
    assert index_of(cmds, "cp", "-R", "k8s", "keda") < index_of(cmds, "kubectl", "apply", "-k")
    https = commands(plan("--domain", "images.acme.example"))
    assert find(https, "kubectl", "apply", "-k", f"{MANIFESTS}/k8s/overlays/gke-https")


def _names_read_by(path: Path) -> set[str]:
    """Environment variable names a module reads with os.environ.get/[...] or os.getenv."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = ast.unparse(node.func)
            if func in ("os.environ.get", "os.getenv", "environ.get", "env.get"):
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
    # Deployed from the zip the release records (what --rollback can deploy again): the files
    # of the function's folder, at the zip's top level.
    [zipped] = find(cmds, "python3", "-m", "zipfile", "-c")
    [upload] = [c for c in find(cmds, "gcloud", "storage", "cp") if c[3] == zipped[4]]
    assert f["source"] == upload[4] == f"gs://{PROJECT}-imageflow-releases/releases/${{RELEASE}}/email-function.zip"
    source = ROOT / Path(zipped[5]).parent
    assert sorted(ROOT / p for p in zipped[5:]) == sorted(p for p in source.iterdir() if p.is_file())
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
    assert env["OTEL_TRACES_EXPORTER"] == "gcp_trace", "its span ends each job's trace in Cloud Trace"
    read = set().union(*(_names_read_by(module) for module in source.glob("*.py")))
    assert main.exists() and set(env) | {"SENDGRID_API_KEY"} <= read


def test_secrets_stay_out_of_the_plan():
    secret = "SG.this-must-not-be-printed"
    text = plan(env={"SENDGRID_API_KEY": secret, "API_KEYS": "k-secret-1", "URL_SIGNING_SECRET": "s3cr3t"})
    for value in (secret, "k-secret-1", "s3cr3t"):
        assert value not in text
    assert '"$SENDGRID_API_KEY" | gcloud secrets versions add imageflow-sendgrid' in text


def test_https_by_default_on_the_domain_or_a_name_of_the_reserved_address():
    """Issue 27 H3: API keys and signed links never travel in clear unless asked for. With
    --domain the certificate is for it; without, for <address-with-dashes>.sslip.io (a name
    that resolves to the reserved address); plain HTTP only with --insecure-http."""
    config = f"{MANIFESTS}/k8s/overlays/gke/config.env"
    text = plan("--domain", "images.acme.example")
    files = heredocs(text)
    assert "PUBLIC_BASE_URL=https://images.acme.example" in files[config].splitlines()
    assert files[f"{MANIFESTS}/k8s/overlays/gke-https/params.env"] == "DOMAIN=images.acme.example"
    assert find(commands(text), "kubectl", "apply", "-k", f"{MANIFESTS}/k8s/overlays/gke-https")

    text = plan()
    files = heredocs(text)
    assert 'INGRESS_HOST="${INGRESS_IP//./-}.sslip.io"' in text.splitlines()
    assert "PUBLIC_BASE_URL=https://${INGRESS_HOST}" in files[config].splitlines()
    assert files[f"{MANIFESTS}/k8s/overlays/gke-https/params.env"] == "DOMAIN=${INGRESS_HOST}"
    assert find(commands(text), "kubectl", "apply", "-k", f"{MANIFESTS}/k8s/overlays/gke-https")
    assert not find(commands(text), "kubectl", "apply", "-k", f"{MANIFESTS}/k8s/overlays/gke")
    assert "http://" not in files[config]

    proc = run_script("--project", PROJECT, "--tag", "v1", "--dry-run", "--email-from", SENDER, "--insecure-http")
    files = heredocs(proc.stdout)
    assert "PUBLIC_BASE_URL=http://${INGRESS_IP}" in files[config].splitlines()
    assert find(commands(proc.stdout), "kubectl", "apply", "-k", f"{MANIFESTS}/k8s/overlays/gke")
    assert "over plain HTTP" in proc.stderr
    both = run_script("--project", PROJECT, "--dry-run", "--insecure-http", "--domain", "a.example", check=False)
    assert both.returncode == 2 and "--domain and --insecure-http contradict" in both.stderr


# ---------------------------------------------------------------- running it -------------
FAKE_GCLOUD = r'''#!/usr/bin/env bash
# Stand-in for gcloud: logs each call; a resource "exists" once created (a file in $FAKE_STATE).
printf 'gcloud' >> "$FAKE_LOG"; printf ' %q' "$@" >> "$FAKE_LOG"; echo >> "$FAKE_LOG"
words=(); verb=""
for a in "$@"; do
  case "$a" in
    --field-config=*) words+=("$a") ;;
    -*) ;;
    describe|create|create-auto|delete) verb="$a" ;;
    *@*.iam.gserviceaccount.com) words+=("${a%%@*}") ;;  # describe takes the email, create the name
    *) words+=("$a") ;;
  esac
done
# FAKE_FLAKY: calls whose arguments contain it fail FAKE_FLAKY_TIMES times with FAKE_FLAKY_ERROR
# (a permission that has not propagated yet), then behave.
if [[ -n "${FAKE_FLAKY:-}" && "$*" == *"$FAKE_FLAKY"* ]]; then
  failed="$(cat "$FAKE_STATE/flaky" 2>/dev/null || echo 0)"
  if ((failed < FAKE_FLAKY_TIMES)); then
    echo $((failed + 1)) > "$FAKE_STATE/flaky"; echo "$FAKE_FLAKY_ERROR" >&2; exit 1
  fi
fi
# Service agents exist once asked for (a fresh project has none): a grant to one that was
# never created fails, as on GCP.
if [[ "$*" == *"beta services identity create --service=pubsub.googleapis.com"* ]]; then touch "$FAKE_STATE/agent_gcp-sa-pubsub"; fi
if [[ "$*" == "storage service-agent"* ]]; then touch "$FAKE_STATE/agent_gs-project-accounts"; exit 0; fi
for agent in gcp-sa-pubsub gs-project-accounts; do
  if [[ "$*" == *"add-iam-policy-binding"*"@$agent.iam.gserviceaccount.com"* && ! -e "$FAKE_STATE/agent_$agent" ]]; then
    echo "ERROR: INVALID_ARGUMENT: Service account service-1@$agent.iam.gserviceaccount.com does not exist." >&2; exit 1
  fi
done
if [[ "$*" == *"secrets versions add"* ]]; then cat > "$FAKE_STATE/secret_value"; exit 0; fi
if [[ "$*" == *"secrets versions access"* ]]; then cat "$FAKE_STATE/secret_value" 2>/dev/null; exit; fi
if [[ "$*" == *"secrets versions describe"* ]]; then [[ -e "$FAKE_STATE/secret_value" ]]; exit; fi
key="$(printf '%s_' "${words[@]}" | tr '/ ' '__')"
# Cloud Storage objects: gs://BUCKET/PATH is $FAKE_STATE/gcs/BUCKET/PATH.
local_path() { if [[ "$1" == gs://* ]]; then echo "$FAKE_STATE/gcs/${1#gs://}"; else echo "$1"; fi; }
case "$*" in
  "storage cp "*) src="$(local_path "$3")"; dst="$(local_path "$4")"; mkdir -p "$(dirname "$dst")"; cp "$src" "$dst"; exit ;;
  "storage cat "*) cat "$(local_path "$3")"; exit ;;
  "storage ls "*) compgen -G "$(local_path "$3")" | sed "s|^$FAKE_STATE/gcs/|gs://|"; exit 0 ;;
  # The digest of what the tag names now: FAKE_BUILD_ID stands for the build that pushed it.
  "artifacts docker images describe "*)
    echo "sha256:$(printf '%s %s' "$5" "${FAKE_BUILD_ID:-}" | sha256sum | cut -d' ' -f1)"; exit 0 ;;
  "beta services identity create"*) exit 0 ;;  # returns the agent, existing or new
  *"monitoring policies list"*)  # found by label: --filter=userLabels.imageflow_alert=ID
    id="${*##*imageflow_alert=}"; id="${id%% *}"
    [[ -e "$FAKE_STATE/policy_$id" ]] && echo "projects/p/alertPolicies/$id"; exit 0 ;;
  *"monitoring policies create"*)
    file="${*##*--policy-from-file=}"; file="${file%% *}"; id="$(basename "$file" .json)"
    touch "$FAKE_STATE/policy_${id#alert-}"; exit 0 ;;
  "projects describe"*) echo "$FAKE_PROJECT_NUMBER"; exit 0 ;;
  "functions describe"*eventTrigger*)
    [[ -e "$FAKE_STATE/function" ]] && echo "projects/p/locations/us-central1/triggers/imageflow-email-758210"; exit 0 ;;
  "eventarc triggers describe"*)
    [[ -e "$FAKE_STATE/function" ]] && echo "projects/p/subscriptions/eventarc-us-central1-imageflow-email-758210-sub-001"
    exit 0 ;;
  "functions deploy"*) touch "$FAKE_STATE/function"; exit 0 ;;
  "functions describe"*) [[ -e "$FAKE_STATE/function" ]]; exit ;;
  "functions delete"*) rm "$FAKE_STATE/function"; exit 0 ;;
  "storage rm --recursive gs://"*) b="${4#gs://}"; rm "$FAKE_STATE/storage_buckets_gs:__${b}_"; rm -f "$FAKE_STATE/notification"
    rm -rf "$FAKE_STATE/gcs/$b"; rmdir "$FAKE_STATE/gcs" 2>/dev/null; exit 0 ;;
  "firestore databases delete"*) rm -f "$FAKE_STATE"/firestore_indexes_* ;;
  "storage buckets notifications delete"*) rm -f "$FAKE_STATE/notification"; exit 0 ;;
  "secrets delete"*) rm -f "$FAKE_STATE/secret_value" ;;
  *"monitoring policies delete"*) rm "$FAKE_STATE/policy_${5##*/}"; exit 0 ;;
  "storage buckets notifications list"*)
    [[ -e "$FAKE_STATE/notification" ]] && echo "//pubsub.googleapis.com/projects/p/topics/imageflow-uploads"; exit 0 ;;
  "storage buckets notifications create"*) touch "$FAKE_STATE/notification"; exit 0 ;;
  "compute addresses describe"*--format*) [[ -e "$FAKE_STATE/$key" ]] && echo "$FAKE_ADDRESS"; exit 0 ;;
esac
case "$verb" in
  describe) [[ -e "$FAKE_STATE/$key" ]] ;;
  create|create-auto)
    if [[ -e "$FAKE_STATE/$key" ]]; then echo "ERROR: ALREADY_EXISTS: $key" >&2; exit 1; fi
    touch "$FAKE_STATE/$key" ;;
  delete)
    if [[ ! -e "$FAKE_STATE/$key" ]]; then echo "ERROR: NOT_FOUND: $key" >&2; exit 1; fi
    rm "$FAKE_STATE/$key" ;;
  *) exit 0 ;;
esac
'''
FAKE_KUBECTL = r'''#!/usr/bin/env bash
# The receiving end of a pipe logs once its input is complete, so the log keeps the pipe's order.
if [[ "$*" == *"apply -f -"* ]]; then cat > "$FAKE_STATE/secret.yaml"; fi
printf 'kubectl' >> "$FAKE_LOG"; printf ' %q' "$@" >> "$FAKE_LOG"; echo >> "$FAKE_LOG"
if [[ "$1 $2" == "apply -k" ]]; then exec "$REAL_KUBECTL" kustomize "$3" > "$FAKE_STATE/applied.yaml"; fi
if [[ "$1 $2" == "apply -f" && "$3" != - ]]; then cp "$3" "$FAKE_STATE/applied.yaml"; exit 0; fi
if [[ "$1" == kustomize ]]; then exec "$REAL_KUBECTL" "$@"; fi
if [[ "$1 $2" == "get namespace" ]]; then [[ -e "$FAKE_STATE/ns_$3" ]]; exit; fi
if [[ "$1 $2" == "create namespace" ]]; then touch "$FAKE_STATE/ns_$3"; fi
if [[ "$1 $2" == "delete namespace" ]]; then rm -f "$FAKE_STATE/ns_$3" "$FAKE_STATE/applied.yaml" "$FAKE_STATE/secret.yaml"; fi
if [[ "$*" == *"--dry-run=client"* ]]; then echo "kind: Secret"; fi
exit 0
'''
FAKE_HELM = r'''#!/usr/bin/env bash
printf 'helm' >> "$FAKE_LOG"; printf ' %q' "$@" >> "$FAKE_LOG"; echo >> "$FAKE_LOG"
'''
# python3: reading the topic names runs the real one; the setup command (which talks to
# Pub/Sub) is logged with the names it was given.
FAKE_PYTHON = r'''#!/usr/bin/env bash
if [[ "$*" == *"imageflow.setup ensure"* ]]; then
  printf 'python3 TASKS_SUBSCRIPTION=%q' "$TASKS_SUBSCRIPTION" >> "$FAKE_LOG"; printf ' %q' "$@" >> "$FAKE_LOG"
  echo >> "$FAKE_LOG"; exit 0
fi
exec "$REAL_PYTHON" "$@"
'''


@pytest.fixture
def sandbox(tmp_path):
    """A copy of the deployable tree, and stand-ins for the cloud CLIs on PATH."""
    real_kubectl = shutil.which("kubectl")
    if real_kubectl is None:
        pytest.skip("kubectl (for its kustomize) is not installed")
    tree = copy_deploy_tree(tmp_path / "repo")
    for name in ("scripts", "functions", "imageflow"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("gcloud", FAKE_GCLOUD), ("kubectl", FAKE_KUBECTL), ("helm", FAKE_HELM),
                       ("python3", FAKE_PYTHON)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(tmp_path / "calls.log"),
           "FAKE_STATE": str(state), "REAL_KUBECTL": real_kubectl, "FAKE_PROJECT_NUMBER": FAKE_PROJECT_NUMBER,
           "FAKE_ADDRESS": FAKE_ADDRESS, "SENDGRID_API_KEY": "SG.test", "API_KEYS": "k-test", "URL_SIGNING_SECRET": "s-test-signing-key",
           "REAL_PYTHON": sys.executable, "EMAIL_FROM": SENDER, "DEPLOY_RETRY_DELAY_SECONDS": "0"}
    return {"tree": tree, "env": env, "log": tmp_path / "calls.log", "state": state}


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_dry_run_runs_nothing_and_writes_nothing(sandbox):
    script = sandbox["tree"] / "scripts/deploy.sh"
    run_script("--project", PROJECT, "--tag", "v1", "--dry-run", script=script, env=sandbox["env"])
    assert _calls(sandbox["log"]) == []
    assert not (sandbox["tree"] / ".deploy").exists()
    assert (sandbox["tree"] / "k8s/overlays/gke/params.env").read_text() == \
        (ROOT / "k8s/overlays/gke/params.env").read_text(), "the committed example is never rewritten"


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
    assert len(creates) >= 20, "a fresh project gets every resource"
    assert any("imageflow.setup ensure" in c and "TASKS_SUBSCRIPTION=imageflow-tasks-processor" in c for c in first)

    # What it applied: the project's images, address and subscription in valid manifests.
    applied = [d for d in yaml.safe_load_all((sandbox["state"] / "applied.yaml").read_text()) if d]
    host = FAKE_ADDRESS.replace(".", "-") + ".sslip.io"
    assert config_map(applied)["PUBLIC_BASE_URL"] == f"https://{host}"
    assert by_kind(applied, "ManagedCertificate")["imageflow-cert"]["spec"]["domains"] == [host]
    assert by_kind(applied, "FrontendConfig")["imageflow-https-redirect"]["spec"]["redirectToHttps"]["enabled"] is True
    ingress = by_kind(applied, "Ingress")["imageflow"]["metadata"]["annotations"]
    assert ingress["networking.gke.io/managed-certificates"] == "imageflow-cert"
    assert config_map(applied)["GCP_PROJECT"] == PROJECT
    image = by_kind(applied, "Deployment")["image-processor"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert re.fullmatch(rf"us-central1-docker\.pkg\.dev/{PROJECT}/imageflow/image-processor@sha256:[0-9a-f]{{64}}", image)
    assert f"--member=serviceAccount:service-{FAKE_PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com" in \
        " ".join(first)
    # The one Secret it creates holds every key the pods read from it: the manager signs the zip
    # link of job.completed with API_KEYS / URL_SIGNING_SECRET, the handler verifies it with the same.
    [created] = [c for c in first if "create secret generic" in c]
    secret = (re.search(r"create secret generic (\S+)", created).group(1),
              set(re.findall(r"--from-literal=([A-Z_]+)=", created)))
    for service in ("image-handler", "interaction-manager"):
        spec = by_kind(applied, "Deployment")[service]["spec"]["template"]["spec"]["containers"][0]
        refs = {(item["valueFrom"]["secretKeyRef"]["name"], item["valueFrom"]["secretKeyRef"]["key"])
                for item in spec["env"] if "secretKeyRef" in item.get("valueFrom", {})}
        assert {(secret[0], key) for key in ("API_KEYS", "URL_SIGNING_SECRET")} <= refs, service
        assert {key for name, key in refs if name == secret[0]} <= secret[1], service

    # A second run finds everything in place: it creates nothing.
    log.unlink()
    run_script(*args, script=tree / "scripts/deploy.sh", env=env)
    again = _calls(log)
    recreated = [c for c in again if re.search(r" (create|create-auto) ", c) and "--dry-run=client" not in c]
    # Firestore indexes have no cheap existence check: re-creating answers ALREADY_EXISTS, accepted;
    # asking for Pub/Sub's service agent returns the existing one.
    idempotent = ("firestore indexes composite create", "services identity create")
    assert [c for c in recreated if not any(i in c for i in idempotent)] == []
    assert len(recreated) == 7  # the indexes (four of list_jobs, page_images, iter_repairs) and the service agent
    assert any("gcloud functions deploy" in c for c in again), "updates still roll out"
    assert not [c for c in again if "secrets versions add" in c], "an unchanged key adds no version"
    assert (sandbox["state"] / "secret_value").read_text() == env["SENDGRID_API_KEY"]


EVENTARC_NOT_READY = ("ERROR: (gcloud.functions.deploy) Invalid resource state for \"\": Permission denied while "
                     "using the Eventarc Service Agent. If you recently started to use Eventarc, it may take a few "
                     "minutes before all necessary permissions are propagated to the Service Agent.")


def test_deploy_waits_for_eventarc_and_iam_propagation(sandbox):
    """Issue 27 H2: on a project that just enabled Eventarc the function's deploy fails for a
    while, and a grant right after an account's creation may not see it yet: the deploy says
    it is waiting, tries again, and finishes."""
    env = {**sandbox["env"], "FAKE_FLAKY": "functions deploy", "FAKE_FLAKY_TIMES": "2", "FAKE_FLAKY_ERROR": EVENTARC_NOT_READY}
    proc = run_script("--project", PROJECT, "--tag", "v1", script=sandbox["tree"] / "scripts/deploy.sh", env=env)
    assert len([c for c in _calls(sandbox["log"]) if c.startswith("gcloud functions deploy")]) == 3
    assert "waiting for permissions to propagate (attempt 1 of 10 failed; next in 0s): gcloud functions deploy" in proc.stderr
    assert "attempt 2 of 10 failed" in proc.stderr and "attempt 3" not in proc.stderr

    sandbox["log"].unlink(); shutil.rmtree(sandbox["state"]); sandbox["state"].mkdir()
    member = "imageflow-email@acme-images.iam.gserviceaccount.com"
    env = {**sandbox["env"], "FAKE_FLAKY": f"--member=serviceAccount:{member}", "FAKE_FLAKY_TIMES": "1",
           "FAKE_FLAKY_ERROR": f"ERROR: INVALID_ARGUMENT: Service account {member} does not exist."}
    proc = run_script("--project", PROJECT, "--tag", "v1", script=sandbox["tree"] / "scripts/deploy.sh", env=env)
    grants = [c for c in _calls(sandbox["log"]) if f"--member=serviceAccount:{member}" in c]
    assert grants[0] == grants[1], "the first grant naming the new account is made again"
    assert "attempt 1 of 10 failed" in proc.stderr


def test_a_propagation_that_never_comes_stops_with_a_clear_message(sandbox):
    env = {**sandbox["env"], "FAKE_FLAKY": "functions deploy", "FAKE_FLAKY_TIMES": "99",
           "FAKE_FLAKY_ERROR": EVENTARC_NOT_READY, "DEPLOY_RETRY_ATTEMPTS": "3"}
    proc = run_script("--project", PROJECT, "--tag", "v1", script=sandbox["tree"] / "scripts/deploy.sh", env=env,
                      check=False)
    assert proc.returncode != 0
    assert len([c for c in _calls(sandbox["log"]) if c.startswith("gcloud functions deploy")]) == 3
    assert "still failing after 3 attempts, waiting for new permissions to propagate: gcloud functions deploy" in proc.stderr
    assert "run the deploy again later, it resumes where it stopped" in proc.stderr


def test_other_errors_are_not_retried(sandbox):
    env = {**sandbox["env"], "FAKE_FLAKY": "functions deploy", "FAKE_FLAKY_TIMES": "99",
           "FAKE_FLAKY_ERROR": "ERROR: (gcloud.functions.deploy) INVALID_ARGUMENT: runtime python311 is not supported"}
    proc = run_script("--project", PROJECT, "--tag", "v1", script=sandbox["tree"] / "scripts/deploy.sh", env=env,
                      check=False)
    assert proc.returncode != 0 and "runtime python311 is not supported" in proc.stderr
    assert len([c for c in _calls(sandbox["log"]) if c.startswith("gcloud functions deploy")]) == 1
    assert "waiting for permissions" not in proc.stderr


# ---------------------------------------------------------------- teardown ---------------
def _resource(c: list[str]) -> tuple[str, str] | None:
    """(kind, name) of a command that creates or deletes one resource of the deploy."""
    words = [w for w in c if not w.startswith("-")]
    name = lambda i: words[i].split("@")[0] if i < len(words) else flags(c).get("database")  # noqa: E731
    if c[:1] == ["kubectl"] and words[1:3] in (["create", "namespace"], ["delete", "namespace"]):
        return ("namespace", words[3])
    if c[:3] == ["gcloud", "functions", "deploy"] or c[:3] == ["gcloud", "functions", "delete"]:
        return ("function", words[3])
    if c[:3] == ["gcloud", "storage", "rm"] and "--recursive" in c:
        return ("storage buckets", words[3])
    if c[:1] != ["gcloud"]:
        return None
    for verb in ("create", "create-auto", "delete"):
        if verb in words[1:5]:
            i = words.index(verb)
            kind = " ".join(w for w in words[1:i] if w != "alpha")
            return (kind, name(i + 1))
    return None


def test_teardown_deletes_everything_the_deploy_creates():
    """Issue 27: back to nothing. Every resource a deploy plan creates has its delete in the
    teardown plan (Firestore indexes go with the database, the bucket's notification with the
    bucket, KEDA with the cluster), the topology's topics and subscriptions included."""
    deploy, teardown = commands(plan()), commands(plan("--teardown"))
    created = {_resource(c) for c in deploy if _resource(c) and "delete" not in c}
    # Gone with what holds them: indexes with the database, the notification with the bucket;
    # alert policies are deleted by label (below); Pub/Sub's service agent is Google's.
    with_others = {"firestore indexes composite", "storage buckets notifications", "monitoring policies",
                   "beta services identity"}
    created = {r for r in created if r[0] not in with_others}
    setup_env, _ = setup_command(deploy)
    settings = Settings.from_env(setup_env)
    created |= {("pubsub topics", t) for t in topology.topics(settings)}
    created |= {("pubsub subscriptions", sub.name) for sub in topology.subscriptions(settings, email_subscription=False)}
    deleted = {_resource(c) for c in teardown if _resource(c) and "delete" in c or c[:3] == ["gcloud", "storage", "rm"]}
    assert created - deleted == set()
    assert len(created) >= 35
    # Alert policies (found by label) and project roles.
    [alerts] = find(teardown, "delete_alert_policies")
    ids = {json.loads(body)["userLabels"]["imageflow_alert"] for path, body in heredocs(plan()).items() if "/alert-" in path}
    assert set(alerts[2:]) == ids
    granted = {(flags(c)["member"], flags(c)["role"]) for c in find(deploy, "gcloud", "projects", "add-iam-policy-binding")}
    removed = {(flags(c)["member"], flags(c)["role"]) for c in find(teardown, "gcloud", "projects", "remove-iam-policy-binding")}
    assert granted == removed
    # Only what exists is deleted (a teardown that stopped is run again), and nothing is created.
    assert not [c for c in teardown if _resource(c) and "delete" not in c and c[:3] != ["gcloud", "storage", "rm"]
                and "describe" not in c]


def test_teardown_order_leaks_nothing():
    cmds = commands(plan("--teardown"))
    at = lambda *prefix: index_of(cmds, *prefix)  # noqa: E731
    # The Ingress goes while its controller runs, so the load balancer's resources go with it;
    # the address only once no forwarding rule uses it.
    assert at("kubectl", "--namespace=imageflow", "delete", "ingress", "imageflow") \
        < at("kubectl", "delete", "namespace", "imageflow") < at("gcloud", "container", "clusters", "delete") \
        < at("gcloud", "compute", "addresses", "delete")
    assert "--wait=true" in cmds[at("kubectl", "--namespace=imageflow", "delete", "ingress")]
    subs = [i for i, c in enumerate(cmds) if c[:4] == ["gcloud", "pubsub", "subscriptions", "delete"]]
    topics = [i for i, c in enumerate(cmds) if c[:4] == ["gcloud", "pubsub", "topics", "delete"]]
    assert max(subs) < min(topics)
    roles = [i for i, c in enumerate(cmds) if c[:3] == ["gcloud", "projects", "remove-iam-policy-binding"]]
    accounts = [i for i, c in enumerate(cmds) if c[:4] == ["gcloud", "iam", "service-accounts", "delete"]]
    assert max(roles) < min(accounts) and len(accounts) == 7
    assert at("gcloud", "functions", "delete") < min(topics), "the trigger's subscription goes with the function first"


def _deploys_resources() -> set[tuple[str, str]]:
    """Every resource a deploy plan leaves on the project, as (kind, name): what its commands
    create (the release records' bucket and the function's image repository included), and the
    setup command's topics and subscriptions; less what goes with what holds it (indexes and
    TTLs with the database, the notification with the bucket, KEDA with the cluster, alert
    policies by label, Google's service agents)."""
    deploy = commands(plan())
    created = {_resource(c) for c in deploy if _resource(c) and "delete" not in c}
    with_others = {"firestore indexes composite", "storage buckets notifications", "monitoring policies",
                   "beta services identity"}
    created = {r for r in created if r[0] not in with_others}
    settings = Settings.from_env(setup_command(deploy)[0])
    created |= {("pubsub topics", t) for t in topology.topics(settings)}
    created |= {("pubsub subscriptions", sub.name) for sub in topology.subscriptions(settings, email_subscription=False)}
    return created


def _teardowns_resources(*args) -> set[tuple[str, str]]:
    return {_resource(c) for c in commands(plan("--teardown", *args))
            if _resource(c) and ("delete" in c or c[:3] == ["gcloud", "storage", "rm"])}


def test_teardown_deletes_exactly_what_the_deploy_creates_and_keep_data_keeps_the_data():
    """Issue 27: the two lists match, both ways: nothing the deploy makes is left behind (a leak,
    billed), and the teardown deletes nothing the deploy did not make. Implicit resources too:
    the builds stage their source in the releases bucket (not a <project>_cloudbuild bucket) and
    the function's image goes to the images' repository (not gcf-artifacts)."""
    created = _deploys_resources()
    data = {("storage buckets", f"gs://{PROJECT}-imageflow"), ("firestore databases", "(default)")}
    assert data | {("storage buckets", f"gs://{PROJECT}-imageflow-releases"),
                   ("artifacts repositories", "imageflow"), ("function", "imageflow-email")} <= created
    assert _teardowns_resources() == created
    # --keep-data: the bucket and Firestore stay, everything else goes; the bucket stops
    # announcing uploads to a topic that is gone.
    assert _teardowns_resources("--keep-data") == (created - data) | {("storage buckets notifications",
                                                                        f"gs://{PROJECT}-imageflow")}
    deploy = commands(plan())
    [build] = find(deploy, "gcloud", "builds", "submit")
    assert flags(build)["gcs-source-staging-dir"].startswith(f"gs://{PROJECT}-imageflow-releases/")
    [function] = find(deploy, "gcloud", "functions", "deploy")
    assert flags(function)["docker-repository"] == f"projects/{PROJECT}/locations/us-central1/repositories/imageflow"


def test_teardown_keep_data_keeps_the_bucket_and_firestore():
    kept = commands(plan("--teardown", "--keep-data"))
    assert [c[4] for c in find(kept, "gcloud", "storage", "rm")] == [f"gs://{PROJECT}-imageflow-releases"]
    assert not find(kept, "gcloud", "firestore", "databases", "delete")
    [notify] = find(kept, "gcloud", "storage", "buckets", "notifications", "delete")
    assert notify[5] == f"gs://{PROJECT}-imageflow", "its topic is deleted: the bucket stops announcing uploads"
    full = commands(plan("--teardown"))
    assert find(full, "gcloud", "storage", "rm", "--recursive", f"gs://{PROJECT}-imageflow")
    assert find(full, "gcloud", "firestore", "databases", "delete")
    bad = run_script("--project", PROJECT, "--dry-run", "--keep-data", check=False)
    assert bad.returncode == 2 and "--keep-data goes with --teardown" in bad.stderr


def test_teardown_after_a_deploy_leaves_nothing_and_runs_again(sandbox):
    tree, env, state = sandbox["tree"], sandbox["env"], sandbox["state"]
    script = tree / "scripts/deploy.sh"
    run_script("--project", PROJECT, "--tag", "v1", script=script, env=env)
    made = {p.name for p in state.iterdir()}
    assert len(made) >= 20
    sandbox["log"].unlink()
    proc = run_script("--project", PROJECT, "--teardown", script=script, env={**env, "API_KEYS": "", "EMAIL_FROM": ""})
    left = {p.name for p in state.iterdir()}
    # Left: Google's service agents (created by Google's services, not the deploy's).
    assert {name for name in left if not name.startswith("agent_")} == set(), left
    calls = _calls(sandbox["log"])
    assert index_of([c.split() for c in calls], "kubectl", "--namespace=imageflow", "delete", "ingress") \
        < index_of([c.split() for c in calls], "gcloud", "container", "clusters", "delete")
    assert f"ImageFlow removed from {PROJECT}" in proc.stderr
    # A second teardown finds nothing to delete.
    sandbox["log"].unlink()
    run_script("--project", PROJECT, "--teardown", script=script, env=env)
    again = _calls(sandbox["log"])
    assert [c for c in again if re.search(r" (delete|rm) ", c) and "remove-iam-policy-binding" not in c] == []
    assert not [c for c in again if c.startswith("kubectl")], "no cluster: no kubectl"


# ---------------------------------------------------------------- gcloud flags -----------
GCLOUD_VERBS = {"enable", "describe", "create", "create-auto", "update", "add-iam-policy-binding", "service-agent",
                "delete", "rm", "cp", "cat",
                "remove-iam-policy-binding",
                "get-credentials", "submit", "deploy", "add", "add-invoker-policy-binding"}


@pytest.mark.slow  # ~25 `gcloud --help` calls: 1-2 minutes on two cores
def test_every_gcloud_flag_exists_in_the_installed_sdk():
    """Each gcloud command of the plan, checked against `gcloud <command> --help` of the
    Cloud SDK installed here (no project, no network): a misspelled flag fails here, not
    halfway through a real deploy."""
    from concurrent.futures import ThreadPoolExecutor

    if shutil.which("gcloud") is None:
        pytest.skip("the Google Cloud CLI is not installed")
    wanted: dict[tuple, set] = {}
    for c in commands(plan("--domain", "images.acme.example")) + commands(plan("--teardown")) \
            + commands(plan("--teardown", "--keep-data")):
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


# ---------------------------------------------------------------- IAM vs the code ---------
# Each service's calls on the ports, found in the code it imports, and the IAM role each
# kind of call needs. The grants are derived from the code, so when code moves between
# services (URL fetching into the processor, say) this test names the grants to move.
SERVICE_ACCOUNTS = {"image-handler": "imageflow-image-handler", "interaction-manager": "imageflow-interaction-manager",
                    "image-processor": "imageflow-image-processor"}
# Modules a service imports whose port calls it does not make as itself.
NOT_THE_SERVICES_CALLS = {
    "imageflow.topology": "creates the topology: the setup command as the operator, bootstrap on the local backend only",
    "imageflow.bootstrap": "builds the adapters; calls topology.ensure on the local backend only",
}
PORT_RECEIVERS = {"blobs": {"blobs", "_blobs", "blobstore"}, "jobs": {"jobs", "_jobs", "store", "jobstore"},
                  "bus": {"bus", "_bus"}}
BLOB_WRITES, BLOB_READS = {"put", "delete_prefix"}, {"get", "open", "exists", "list", "signed_url"}
JOB_WRITES = {"create_job", "update_job", "record_results", "mark_notified", "delete_job"}
JOB_READS = {"get_job", "get_image", "list_images", "list_jobs", "check"}
BUS_TOPIC_CALLS, BUS_SUBSCRIPTION_CALLS = {"publish"}, {"subscribe", "pull"}


def _service_modules(service: str) -> list[Path]:
    """The project modules a service's process imports (its app and what that pulls in)."""
    package = "services." + service.replace("-", "_")
    code = (f"import sys, {package}.app; print('\\n'.join(m.__file__ for n, m in sys.modules.items() "
            "if n.startswith(('imageflow', 'services')) and getattr(m, '__file__', None)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    skipped = {ROOT / (name.replace(".", "/") + ".py") for name in NOT_THE_SERVICES_CALLS}
    adapters = ("imageflow/bus/", "imageflow/jobstore/", "imageflow/blobstore/", "imageflow/engine/")
    return [Path(f) for f in out.split() if Path(f) not in skipped
            and not any(part in f for part in adapters)]


def _port_calls(paths: list[Path]) -> dict[str, set]:
    """{"blobs"|"jobs": {method}, "bus": {(method, topics attribute)}} used in these modules;
    a readiness check is a reference to `<port>.check` or a call of `backends.checks()`."""
    from imageflow.topology import Topics

    found = {"blobs": set(), "jobs": set(), "bus": set()}
    unresolved = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("backends.checks"):
                found["blobs"].add("check"); found["jobs"].add("check"); found["bus"].add(("check", "jobs"))
            if not isinstance(node, ast.Attribute):
                continue
            receiver = ast.unparse(node.value).split(".")[-1]
            port = next((p for p, names in PORT_RECEIVERS.items() if receiver in names), None)
            if port == "bus" and node.attr == "check":
                found["bus"].add(("check", "jobs"))  # MessageBus.check reads the jobs topic
            elif port is not None and port != "bus":
                found[port].add(node.attr)
        for node in ast.walk(ast.parse(path.read_text())):  # bus calls: the topic is the first argument
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "Subscription" and node.args:
                # a row of the manager's table of subscriptions (``t`` is settings.topics there)
                arg = ast.unparse(node.args[0])
                if arg.startswith(("topics.", "t.")) and hasattr(Topics(), arg.split(".")[-1]):
                    found["bus"].add(("subscribe", arg.split(".")[-1]))
                else:
                    unresolved.append(f"{path.relative_to(ROOT)}: Subscription({arg})")
                continue
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in BUS_TOPIC_CALLS | BUS_SUBSCRIPTION_CALLS
                    and ast.unparse(node.func.value).split(".")[-1] in PORT_RECEIVERS["bus"]):
                continue
            arg = ast.unparse(node.args[0]) if node.args else ""
            if arg.endswith(".subscription") and node.func.attr == "subscribe":
                continue  # subscribing each row of a Subscription table: the rows are counted above
            name = arg.split(".")[-1]
            if not (arg.startswith("topics.") or ".topics." in arg) or not hasattr(Topics(), name):
                unresolved.append(f"{path.relative_to(ROOT)}: {ast.unparse(node.func)}({arg})")
                continue
            found["bus"].add((node.func.attr, name))
    assert unresolved == [], "name topics as settings.topics.<name> so the grants can be derived"
    return found


@functools.lru_cache(maxsize=None)
def _required_grants(service: str) -> frozenset[tuple[str, str]]:
    """(resource, role) pairs this service's calls need."""
    calls = _port_calls(_service_modules(service))
    topics = Settings().topics
    need = set()
    if "check" in calls["blobs"]:
        need.add(("bucket", "roles/storage.legacyBucketReader"))  # /readyz reads the bucket's metadata
    if calls["blobs"] & BLOB_WRITES:
        need.add(("bucket", "roles/storage.objectUser"))  # writes overwrite: create and delete
    elif calls["blobs"] & BLOB_READS:
        need.add(("bucket", "roles/storage.objectViewer"))
    if "signed_url" in calls["blobs"]:
        need.add(("self", "roles/iam.serviceAccountTokenCreator"))  # signBlob as itself
    if calls["jobs"] & JOB_WRITES:
        need.add(("project", "roles/datastore.user"))
    elif calls["jobs"] & JOB_READS:
        need.add(("project", "roles/datastore.viewer"))
    for method, attr in calls["bus"]:
        name = getattr(topics, attr)
        if method == "check":
            need.add((f"topic:{name}", "roles/pubsub.viewer"))
        elif method in BUS_TOPIC_CALLS:
            need.add((f"topic:{name}", "roles/pubsub.publisher"))
        else:
            need.add((f"subscription:{name}", "roles/pubsub.subscriber"))
    return frozenset(need)


def _granted(cmds, gsa: str) -> set[tuple[str, str]]:
    member = f"serviceAccount:{gsa}"
    grants = set()
    for c in cmds:
        if len(c) < 5 or c[0] != "gcloud" or not any(w == "add-iam-policy-binding" for w in c):
            continue
        f = flags(c)
        if f.get("member") != member:
            continue
        if c[1:3] == ["storage", "buckets"]:
            grants.add(("bucket", f["role"]))
        elif c[1] == "projects" and f["role"].startswith("roles/datastore."):
            grants.add(("project", f["role"]))
        elif c[1:3] == ["pubsub", "topics"]:
            grants.add((f"topic:{c[4]}", f["role"]))
        elif c[1:3] == ["pubsub", "subscriptions"]:
            grants.add((f"subscription:{c[4]}", f["role"]))
        elif c[1:3] == ["iam", "service-accounts"] and c[4] == gsa:
            grants.add(("self", f["role"]))
    return grants


@pytest.mark.parametrize("service", sorted(SERVICE_ACCOUNTS))
def test_each_service_is_granted_exactly_what_its_code_calls(service):
    """Storage, Firestore and Pub/Sub roles: nothing missing (a 403 on GKE, e.g. URL imports
    that cannot write their inputs), nothing extra (the processor reading job documents)."""
    gsa = f"{SERVICE_ACCOUNTS[service]}@{PROJECT}.iam.gserviceaccount.com"
    assert _granted(commands(plan()), gsa) == _required_grants(service)


def _pubsub_grants(cmds) -> set[tuple[str, str, str, str]]:
    """(topics|subscriptions, name, member, role) of every Pub/Sub binding in the plan."""
    return {(c[2], c[4], flags(c)["member"], flags(c)["role"]) for c in cmds
            if c[:2] == ["gcloud", "pubsub"] and len(c) > 4 and c[3] == "add-iam-policy-binding"}


def _table_grants(table_lines: list[str]) -> set[tuple[str, str, str, str]]:
    """The Pub/Sub bindings a topology table asks for (imageflow.topology.table)."""
    grants = set()
    for line in table_lines:
        kind, first, second = line.split()
        if kind == "dead-letter":
            grants.add(("topics", second, AGENT, "roles/pubsub.publisher"))
            grants.add(("subscriptions", first, AGENT, "roles/pubsub.subscriber"))
        elif kind in {"publish", "view", "subscribe"}:
            member = f"serviceAccount:{SERVICE_ACCOUNTS[first]}@{PROJECT}.iam.gserviceaccount.com"
            role = {"publish": "roles/pubsub.publisher", "view": "roles/pubsub.viewer",
                    "subscribe": "roles/pubsub.subscriber"}[kind]
            grants.add(("topics" if kind != "subscribe" else "subscriptions", second, member, role))
    return grants


# Pub/Sub bindings deploy.sh makes outside the table: the bucket's agent publishes the uploads topic's
# object events, and the email function's Eventarc subscription (found at deploy time) dead-letters.
OUTSIDE_THE_TABLE = {
    ("topics", "imageflow-uploads", "serviceAccount:service-${PROJECT_NUMBER}@gs-project-accounts.iam.gserviceaccount.com",
     "roles/pubsub.publisher"),
    ("topics", "imageflow-notifications-dlq", AGENT, "roles/pubsub.publisher"),
    ("subscriptions", "${EMAIL_TRIGGER_SUBSCRIPTION}", AGENT, "roles/pubsub.subscriber"),
}


def test_pubsub_grants_are_the_topology_tables():
    """deploy.sh's Pub/Sub bindings are imageflow/topology.py's table, row for row, and nothing else."""
    rows = topology.table(topology.Topics(), email_subscription=False)
    assert _pubsub_grants(commands(plan())) == _table_grants(rows) | OUTSIDE_THE_TABLE


def test_deploy_reads_names_and_bindings_from_the_table(tmp_path):
    """A different table (a renamed dead-letter topic, one more publisher) changes the plan with it:
    deploy.sh derives neither the names nor the bindings itself."""
    rows = topology.table(topology.Topics(), email_subscription=False)
    changed = [line.replace("imageflow-jobs-dlq", "acme-jobs-dead") for line in rows]
    changed.append("publish image-processor imageflow-notifications")
    table_file = tmp_path / "table.txt"
    table_file.write_text("".join(line + "\n" for line in changed))
    stand_in = tmp_path / "python3"
    stand_in.write_text(f"""#!/usr/bin/env bash
if [[ "$*" == "-m imageflow.topology --table --no-email-subscription" ]]; then cat {shlex.quote(str(table_file))}; exit 0; fi
exec {shlex.quote(sys.executable)} "$@"
""")
    stand_in.chmod(0o755)
    cmds = commands(plan(env={"PYTHON": str(stand_in)}))
    assert _pubsub_grants(cmds) == _table_grants(changed) | OUTSIDE_THE_TABLE
    assert ("topics", "acme-jobs-dead", AGENT, "roles/pubsub.publisher") in _pubsub_grants(cmds)
    # the names are read from the table too (JOBS_DLQ_SUBSCRIPTION, printed into the plan's alert policies)
    assert not any("imageflow-jobs-dlq" in " ".join(c) for c in cmds)


def test_a_table_naming_an_unknown_service_stops_the_deploy(tmp_path):
    stand_in = tmp_path / "python3"
    stand_in.write_text(f"""#!/usr/bin/env bash
if [[ "$*" == "-m imageflow.topology --table --no-email-subscription" ]]; then
  {shlex.quote(sys.executable)} "$@"; echo "publish thumbnailer imageflow-jobs"; exit 0
fi
exec {shlex.quote(sys.executable)} "$@"
""")
    stand_in.chmod(0o755)
    proc = run_script("--project", PROJECT, "--tag", "v1", "--dry-run", "--email-from", SENDER,
                      env={"PYTHON": str(stand_in)}, check=False)
    assert proc.returncode != 0
    assert "the topology names a service deploy.sh has no account for: thumbnailer" in proc.stderr


def test_the_role_map_sees_the_calls_that_need_roles():
    """The derivation itself: the manager writes blobs, the handler signs URLs and writes job documents,
    the processor touches no job document (its cancel gate reads the bucket, dedupe the task)."""
    assert ("bucket", "roles/storage.objectUser") in _required_grants("interaction-manager")
    assert ("project", "roles/datastore.user") in _required_grants("image-handler")
    assert {r for r in _required_grants("image-processor") if r[0] == "project"} == set()
    assert ("self", "roles/iam.serviceAccountTokenCreator") in _required_grants("image-handler")


def test_every_workload_that_makes_spans_may_write_them_to_cloud_trace():
    """The gke overlay and the function's env turn traces on (OTEL_TRACES_EXPORTER=gcp_trace):
    each of their service accounts needs roles/cloudtrace.agent (telemetry.traces.write) on
    the project, and the Telemetry API must be on; nothing else gets the role."""
    cmds = commands(plan())
    agents = {flags(c)["member"] for c in find(cmds, "gcloud", "projects", "add-iam-policy-binding")
              if flags(c)["role"] == "roles/cloudtrace.agent"}
    workloads = {*SERVICE_ACCOUNTS.values(), "imageflow-email"}
    assert agents == {f"serviceAccount:{name}@{PROJECT}.iam.gserviceaccount.com" for name in workloads}
    [enable] = find(cmds, "gcloud", "services", "enable")
    assert {"telemetry.googleapis.com", "cloudtrace.googleapis.com"} <= set(enable)


def test_a_redeploy_drops_the_processors_firestore_role_an_earlier_deploy_granted():
    """Adding bindings never removes one: an existing project keeps the processor's old
    roles/datastore.viewer unless the plan removes it (harmless when it is absent)."""
    gsa = f"serviceAccount:{SERVICE_ACCOUNTS['image-processor']}@{PROJECT}.iam.gserviceaccount.com"
    cmds = commands(plan())
    removed = [flags(c) for c in find(cmds, "gcloud", "projects", "remove-iam-policy-binding")]
    assert [(f["member"], f["role"]) for f in removed] == [(gsa, "roles/datastore.viewer")]
    assert "remove-iam-policy-binding" in plan() and ">/dev/null 2>&1 || true" in next(
        line for line in plan().splitlines() if "remove-iam-policy-binding" in line)


def test_a_job_document_read_in_the_processor_would_need_a_firestore_role(tmp_path):
    """The derivation would catch the processor regaining a Firestore call: the old job gate's read
    (``self.jobs.get_job``) maps to roles/datastore.viewer."""
    module = tmp_path / "gate.py"
    module.write_text("class JobGate:\n    def job(self, job_id):\n        return self.jobs.get_job(job_id)\n")
    calls = _port_calls([module])
    assert calls["jobs"] & JOB_READS == {"get_job"}
    processor_modules = [p for p in _service_modules("image-processor") if p.parent.name == "image_processor"]
    assert {p.name for p in processor_modules} >= {"app.py", "job_gate.py", "dedupe.py", "processing.py"}
    assert _port_calls(processor_modules)["jobs"] == set(), "the processor's own code touches no job store"


# ---------------------------------------------------------------- refusals and options ----
def test_a_deploy_without_api_keys_is_refused_unless_the_api_is_meant_to_be_open(tmp_path):
    env = {"API_KEYS": "", "EMAIL_FROM": SENDER, "SENDGRID_API_KEY": ""}
    refused = run_script("--project", PROJECT, check=False, env=env)
    assert refused.returncode == 2 and "API_KEYS is not set" in refused.stderr
    # The plan refuses too when it runs without keys.
    text = plan(env=env)
    proc = subprocess.run(["bash", "-c", text.split("\n# ---- 1.")[0]], capture_output=True, text=True,
                          env={**os.environ, "API_KEYS": ""})
    assert proc.returncode == 2 and "API_KEYS is not set" in proc.stderr
    assert "API_KEYS is not set" not in plan("--allow-open-api", env=env)


def test_a_deploy_with_api_keys_and_no_signing_key_is_refused():
    """The services refuse to start with keys on and no URL_SIGNING_SECRET (never derived from the
    keys), so the deploy refuses first, saying how to make one, and so does its plan."""
    env = {"API_KEYS": "k-1", "URL_SIGNING_SECRET": "", "EMAIL_FROM": SENDER, "SENDGRID_API_KEY": ""}
    refused = run_script("--project", PROJECT, check=False, env=env)
    assert refused.returncode == 2 and "URL_SIGNING_SECRET is not set" in refused.stderr
    assert "secrets.token_hex" in refused.stderr
    text = plan(env=env)
    proc = subprocess.run(["bash", "-c", text.split("\n# ---- 1.")[0]], capture_output=True, text=True,
                          env={**os.environ, **env})
    assert proc.returncode == 2 and "URL_SIGNING_SECRET is not set" in proc.stderr


def test_email_from_is_required_for_sendgrid():
    proc = run_script("--project", PROJECT, "--dry-run", check=False,
                      env={"EMAIL_FROM": "", "SENDGRID_API_KEY": "SG.key", "API_KEYS": "k"})
    assert proc.returncode == 2 and "--email-from" in proc.stderr
    proc = run_script("--project", PROJECT, check=False, env={"EMAIL_FROM": "", "API_KEYS": "k"})
    assert proc.returncode == 2 and "--email-from" in proc.stderr
    assert "no-reply@imageflow.invalid" not in run_script("--dry-run", env={"EMAIL_FROM": ""}).stdout


def test_the_function_is_invoked_only_by_its_trigger_identity():
    cmds = commands(plan())
    assert not [c for c in find(cmds, "gcloud", "projects", "add-iam-policy-binding")
                if flags(c)["role"] == "roles/run.invoker"], "run.invoker project-wide"
    [invoker] = find(cmds, "gcloud", "functions", "add-invoker-policy-binding")
    deploy = find(cmds, "gcloud", "functions", "deploy")[0]
    assert invoker[3] == deploy[3]
    assert flags(invoker)["member"] == f"serviceAccount:{flags(deploy)['trigger-service-account']}"


def test_pubsub_service_agent_is_created_before_its_bindings():
    cmds = commands(plan())
    identity = index_of(cmds, "gcloud", "beta", "services", "identity", "create")
    assert flags(cmds[identity])["service"] == "pubsub.googleapis.com"
    agent = [i for i, c in enumerate(cmds) if "gcp-sa-pubsub" in flags(c).get("member", "")]
    assert agent and identity < min(agent)


def test_every_service_agent_is_created_before_it_is_granted():
    """Issue 27 H1: Google's service agents exist only once asked for; a grant to one that does
    not exist fails, on the first deploy and on every re-run."""
    cmds = commands(plan())
    created = {"gcp-sa-pubsub": index_of(cmds, "gcloud", "beta", "services", "identity", "create"),
               "gs-project-accounts": index_of(cmds, "gcloud", "storage", "service-agent")}
    assert flags(cmds[created["gcp-sa-pubsub"]])["service"] == "pubsub.googleapis.com"
    assert flags(cmds[created["gs-project-accounts"]])["project"] == PROJECT
    granted = [c for c in cmds if "-${PROJECT_NUMBER}@" in flags(c).get("member", "")]
    agents = {re.search(r"@([a-z-]+)\.iam\.gserviceaccount\.com", flags(c)["member"]).group(1) for c in granted}
    assert agents == set(created), "every agent granted a role is created by the plan"
    for c in granted:
        agent = re.search(r"@([a-z-]+)\.iam", flags(c)["member"]).group(1)
        assert created[agent] < cmds.index(c), c


def test_propagation_sensitive_steps_are_retried():
    """Issue 27 H2: every IAM grant (it may name an account created seconds before) and the email
    function's deploy (Eventarc's service agent on a new project) run under retry_propagation."""
    text = plan()
    lines = [line for line in text.splitlines() if not line.startswith((" ", "#"))]
    sensitive = [line for line in lines if re.search(r"^(retry_propagation )?gcloud .*"
                                                     r"(add-iam-policy-binding|add-invoker-policy-binding|functions deploy)", line)]
    assert len(sensitive) >= 30
    assert [line for line in sensitive if not line.startswith("retry_propagation ")] == []
    assert "\nretry_propagation () \n" in text, "the plan defines the function it calls"


def test_one_retention_setting_drives_the_bucket_and_firestore():
    text = plan("--retention-days", "9")
    cmds = commands(text)
    update = find(cmds, "gcloud", "storage", "buckets", "update")[0]
    rules = yaml.safe_load(heredocs(text)[flags(update)["lifecycle-file"]])["rule"]
    assert {"action": {"type": "Delete"}, "condition": {"age": 9}} in rules
    ttls = find(cmds, "gcloud", "firestore", "fields", "ttls", "update")
    assert {(c[5], flags(c)["collection-group"]) for c in ttls} == {("expires_at", "jobs"), ("expires_at", "images")}
    assert all("--enable-ttl" in c for c in ttls)
    config = heredocs(text)[f"{MANIFESTS}/k8s/overlays/gke/config.env"].splitlines()
    assert "JOB_RETENTION_DAYS=9" in config
    assert Settings.from_env({"JOB_RETENTION_DAYS": "9"}).job_retention_days == 9


def test_originals_are_deleted_a_week_after_completion_unless_told_otherwise():
    """Issue 27 "Costs that follow use": the originals are most of the stored bytes; the cluster's
    interaction manager deletes them INPUT_RETENTION_HOURS after a job completes (no bucket
    lifecycle rule can: they are <job_id>/input/..., and rules match names from the start)."""
    config = f"{MANIFESTS}/k8s/overlays/gke/config.env"
    for args, hours in (((), 168), (("--input-retention-hours", "0"), 0), (("--input-retention-hours", "24"), 24)):
        lines = heredocs(plan(*args))[config].splitlines()
        env = dict(line.split("=", 1) for line in lines)
        assert Settings.from_env(env).input_retention_hours == hours, args
    bad = run_script("--project", PROJECT, "--dry-run", "--input-retention-hours", "a week", check=False)
    assert bad.returncode == 2 and "--input-retention-hours must be a whole number" in bad.stderr


def test_alert_policies_watch_the_backlog_dead_letters_and_emails():
    text = plan()
    cmds = commands(text)
    files = heredocs(text)
    topics = Settings().topics
    policies = {}
    for c in find(cmds, "gcloud", "alpha", "monitoring", "policies", "create"):
        policy = json.loads(files[flags(c)["policy-from-file"]])
        policies[policy["userLabels"]["imageflow_alert"]] = policy["conditions"][0]["conditionThreshold"]["filter"]
    assert set(policies) == {"task-backlog-age", "dead-lettered-tasks", "dead-lettered-webhooks", "dead-lettered-emails",
                             "failed-emails"}
    assert "oldest_unacked_message_age" in policies["task-backlog-age"]
    assert f'subscription_id="{topics.tasks_sub}"' in policies["task-backlog-age"]
    assert f'subscription_id="{topics.tasks_dlq_sub}"' in policies["dead-lettered-tasks"]
    assert f'subscription_id="{topics.webhooks_dlq_sub}"' in policies["dead-lettered-webhooks"]
    assert f'subscription_id="{topics.notifications_dlq_sub}"' in policies["dead-lettered-emails"]
    metric = find(cmds, "gcloud", "logging", "metrics", "create")[0]
    assert f"logging.googleapis.com/user/{metric[4]}" in policies["failed-emails"]
    log_filter = flags(metric)["log-filter"]
    assert 'service_name="imageflow-email"' in log_filter
    # The function logs plain text, which Cloud Logging stores without a severity: the
    # filter must match what it writes when a mail is not sent.
    import logging

    main = (ROOT / "functions/email_notifier/main.py").read_text()
    logger = re.search(r'^log = logging.getLogger\("([^"]+)"\)', main, re.M).group(1)
    assert re.search(r"^logging.basicConfig\(level=logging.INFO\)$", main, re.M), "logging's default line format"
    error_line = logging.BASIC_FORMAT % {"levelname": "ERROR", "name": logger, "message": ""}
    assert f'textPayload:"{error_line}"' in log_filter and 'textPayload:"Traceback"' in log_filter
    # Each is created only if absent (found by its label).
    assert len(find(cmds, "alert_policy_exists")) == 5


def test_keda_chart_version_is_a_published_release():
    helm = find(commands(plan()), "helm", "upgrade", "--install", "keda")[0]
    # github.com/kedacore/charts/releases/tag/v2.21.1 (the newest confirmed release).
    assert flags(helm)["version"] == "2.21.1"


# ---------------------------------------------------------------- releases and rollback ---
RELEASES = f"gs://{PROJECT}-imageflow-releases/releases"


def test_each_deploy_records_its_release_where_any_machine_can_read_it():
    """Issue 27 M5: the images' digests, the rendered manifests, the function's source and
    environment go to releases/<n>/ in the releases bucket; releases/<n>.json last (a whole
    release), then releases/current."""
    text = plan()
    cmds = commands(text)
    uploads = {c[4]: c[3] for c in find(cmds, "gcloud", "storage", "cp") if c[4].startswith(RELEASES)}
    assert set(uploads) == {f"{RELEASES}/${{RELEASE}}/{name}" for name in
                            ("email-function.zip", "manifests.yaml", "function-env.yaml")} \
        | {f"{RELEASES}/${{RELEASE}}.json", f"{RELEASES}/current"}
    order = [c[4] for c in find(cmds, "gcloud", "storage", "cp")]
    assert order[-2:] == [f"{RELEASES}/${{RELEASE}}.json", f"{RELEASES}/current"]
    [render] = find(cmds, "kubectl", "kustomize")
    assert render[2] == f"{MANIFESTS}/k8s/overlays/gke-https" and flags(render)["output"] == uploads[f"{RELEASES}/${{RELEASE}}/manifests.yaml"]
    record = json.loads(heredocs(text)[uploads[f"{RELEASES}/${{RELEASE}}.json"]].replace("${RELEASE}", "7"))
    params = dict(line.split("=", 1) for line in heredocs(text)[f"{MANIFESTS}/k8s/overlays/gke/params.env"].splitlines())
    assert record["release"] == 7 and record["tag"] == "v1"
    assert record["images"] == {name: params[f"{name.upper().replace('-', '_')}_IMAGE"] for name in record["images"]}
    assert all("@${" in ref and "_DIGEST}" in ref for ref in record["images"].values())
    assert heredocs(text)[uploads[f"{RELEASES}/current"]] == "${RELEASE}"
    # The number: one more than the highest recorded, found once the digests are known.
    assert "next-release" in captured(text, "RELEASE")


def test_rollback_plan_reapplies_the_previous_release_as_a_whole():
    text = run_script("--project", PROJECT, "--dry-run", "--rollback", env={"API_KEYS": "", "EMAIL_FROM": ""}).stdout
    cmds = commands(text)
    assert captured(text, "CURRENT_RELEASE") == ["gcloud", "storage", "cat", f"{RELEASES}/current"]
    assert 'ROLLBACK_RELEASE="$((CURRENT_RELEASE - 1))"' in text.splitlines()
    fetched = {c[3]: c[4] for c in find(cmds, "gcloud", "storage", "cp") if c[3].startswith(RELEASES)}
    previous = f"{RELEASES}/${{ROLLBACK_RELEASE}}"
    assert set(fetched) == {f"{previous}.json", f"{previous}/manifests.yaml", f"{previous}/function-env.yaml"}
    [apply] = find(cmds, "kubectl", "apply")
    assert apply == ["kubectl", "apply", "-f", fetched[f"{previous}/manifests.yaml"]]
    [function] = find(cmds, "gcloud", "functions", "deploy")
    assert flags(function)["source"] == f"{previous}/email-function.zip"
    assert flags(function)["env-vars-file"] == fetched[f"{previous}/function-env.yaml"]
    # Nothing is built or rendered from the checkout; the previous release becomes the current.
    assert not find(cmds, "gcloud", "builds", "submit") and not find(cmds, "kubectl", "kustomize")
    assert find(cmds, "gcloud", "storage", "cp")[-1][4] == f"{RELEASES}/current"
    bad = run_script("--project", PROJECT, "--dry-run", "--rollback", "--teardown", check=False)
    assert bad.returncode == 2 and "--rollback and --teardown contradict" in bad.stderr


def _applied(state: Path) -> tuple[dict, dict]:
    applied = [d for d in yaml.safe_load_all((state / "applied.yaml").read_text()) if d]
    images = {name: d["spec"]["template"]["spec"]["containers"][0]["image"]
              for name, d in by_kind(applied, "Deployment").items()}
    return images, config_map(applied)


def test_rollback_restores_the_previous_releases_digests_config_and_function(sandbox):
    import zipfile

    tree, env, state = sandbox["tree"], sandbox["env"], sandbox["state"]
    script = tree / "scripts/deploy.sh"
    main = tree / "functions/email_notifier/main.py"
    first_main = main.read_text()
    run_script("--project", PROJECT, "--tag", "v1", script=script, env={**env, "FAKE_BUILD_ID": "1"}, cwd=tree)
    images_1, config_1 = _applied(state)
    env_1 = (tree / f".deploy/{PROJECT}/function-env.yaml").read_text()
    # Release 2: new images, another configuration, another function (source and sender).
    main.write_text(first_main + "\n# release 2\n")
    run_script("--project", PROJECT, "--tag", "v2", "--retention-days", "9", script=script, cwd=tree,
               env={**env, "FAKE_BUILD_ID": "2", "EMAIL_FROM": "Other <other@acme.example>"})
    images_2, config_2 = _applied(state)
    assert set(images_1.values()).isdisjoint(images_2.values()) and config_2["JOB_RETENTION_DAYS"] == "9"
    gcs = state / f"gcs/{PROJECT}-imageflow-releases/releases"
    assert json.loads((gcs / "1.json").read_text())["images"] == {
        name: images_1[name] for name in ("image-handler", "interaction-manager", "image-processor", "frontend")}
    assert (gcs / "current").read_text().strip() == "2"

    # From another machine (no .deploy/ of its own) and without the deploy's secrets.
    shutil.rmtree(tree / ".deploy")
    sandbox["log"].unlink()
    proc = run_script("--project", PROJECT, "--rollback", script=script, cwd=tree,
                      env={**env, "API_KEYS": "", "EMAIL_FROM": "", "SENDGRID_API_KEY": ""})
    assert "rolled back to release 1" in proc.stderr
    images, config = _applied(state)
    assert images == images_1 and all("@sha256:" in ref for ref in images.values())
    assert config == config_1 and config["JOB_RETENTION_DAYS"] == "30"
    [deploy] = [shlex.split(c) for c in _calls(sandbox["log"]) if c.startswith("gcloud functions deploy")]
    assert flags(deploy)["source"] == f"{RELEASES}/1/email-function.zip"
    with zipfile.ZipFile(state / f"gcs/{PROJECT}-imageflow-releases/releases/1/email-function.zip") as archive:
        assert archive.read("main.py").decode() == first_main
    assert (tree / flags(deploy)["env-vars-file"]).read_text() == env_1
    assert (gcs / "current").read_text().strip() == "1"
    assert not [c for c in _calls(sandbox["log"]) if "builds submit" in c or "apply -k" in c]
    # Release 1 was the first: nothing before it.
    again = run_script("--project", PROJECT, "--rollback", script=script, cwd=tree, check=False,
                       env={**env, "API_KEYS": "", "EMAIL_FROM": ""})
    assert again.returncode != 0 and "release 1 is the first: there is none to roll back to" in again.stderr
