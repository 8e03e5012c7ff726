"""The Kubernetes manifests and KEDA objects, checked offline: against the Kubernetes API
schemas (kubernetes-validate), against KEDA's CRD fields (tests/data/k8s/), and
against the code: env names, topic and subscription names, ports and probe paths must be
the ones the services read and serve."""
from __future__ import annotations

import copy
import json
import math
import re
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml

from imageflow import topology
from imageflow.settings import ENV_NAMES, Settings, Topics

from .k8s_support import (NAMESPACE, ROOT, SAMPLE_CONFIG, SAMPLE_PARAMS, by_kind, config_map, container,
                          container_env, keda_objects, kustomize, render_overlay, service_routes)

# GKE release channels span these minors; the manifests must be valid on all of them.
K8S_VERSIONS = ("1.33.0", "1.35.0", "1.37.0")
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ManagedCertificate", "FrontendConfig", "BackendConfig",
             "PodMonitoring"}
SERVICES = ("image-handler", "interaction-manager", "image-processor")
DEPLOYMENTS = SERVICES + ("frontend",)

# Settings deliberately not in the shared ConfigMap, and why. A new name in ENV_NAMES fails
# test_every_setting_is_placed until someone decides where it belongs.
NOT_IN_CONFIGMAP = {
    "IMAGEFLOW_PORT": "per container (image-handler's env)",
    "PORT": "per container (interaction-manager, image-processor)",
    "SENDGRID_API_KEY": "read by the email function only, from Secret Manager (deploy.sh --set-secrets)",
    "SENDGRID_API_HOST": "email function only (a test stand-in); its default is SendGrid's",
    "API_KEYS": "a secret: image-handler and interaction-manager read it from the Secret imageflow-secrets",
    "URL_SIGNING_SECRET": "a secret: image-handler and interaction-manager read it from the Secret imageflow-secrets",
    "NOTIFICATION_LINK_DAYS": "applies only when JOB_RETENTION_DAYS is 0, which deploy.sh refuses (local only)",
    "FETCH_ALLOW_CIDRS": "tests only (imageflow/settings.py)",
    "FETCH_HOSTS_OVERRIDE": "tests only (imageflow/settings.py)",
    "IMAGEFLOW_FAULTS": "fault injection for the reliability suites only",
    "EMAIL_FROM": "read by the email function only (deploy.sh --env-vars-file)",
    "FRONTEND_DIR": "the frontend is its own container on GKE, not served by image-handler",
    "NOTIFICATIONS_PUSH_ENDPOINT": "local/emulator push delivery; on GCP Eventarc delivers to the function",
}
# Read by a tool in the image rather than by imageflow.settings.
TOOL_ENV = {"GUNICORN_CMD_ARGS": "gunicorn", "IMAGE_HANDLER_URL": "the frontend's nginx config template"}


@pytest.fixture(scope="module")
def base():
    return kustomize(ROOT / "k8s/base")


@pytest.fixture(scope="module")
def overlay(tmp_path_factory):
    return render_overlay(tmp_path_factory.mktemp("gke"))


@pytest.fixture(scope="module")
def https_overlay(tmp_path_factory):
    return render_overlay(tmp_path_factory.mktemp("gke-https"), https_domain="images.acme.example")


@pytest.fixture(scope="module")
def routes(tmp_path_factory):
    return service_routes(tmp_path_factory.mktemp("routes"))


# ---------------------------------------------------------------- schemas ----------------
def _k8s_errors(doc: dict, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{doc['kind']}/{doc['metadata'].get('name')}: {exc.message} at {list(exc.path)}"]
    return []


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version, base, overlay, https_overlay):
    errors = []
    for docs in (base, overlay, https_overlay):
        for doc in docs:
            if doc["kind"] not in CRD_KINDS:
                errors += _k8s_errors(doc, version)
    assert errors == []


def test_the_kubernetes_validation_rejects_an_unknown_field(overlay):
    deployment = copy.deepcopy(by_kind(overlay, "Deployment")["image-processor"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/readyz"}
    assert _k8s_errors(deployment, K8S_VERSIONS[-1])


@pytest.fixture(scope="module")
def keda_schemas():
    """KEDA's CRD fields, rejecting unknown keys (tests/data/k8s/README.md says where from)."""
    doc = json.loads((ROOT / "tests/data/k8s/keda-crd-fields.json").read_text())
    return doc["schemas"]


def _keda_errors(doc: dict, schemas) -> list[str]:
    validator = jsonschema.Draft202012Validator(schemas[doc["kind"]])
    return [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_keda_objects_validate_against_the_keda_crd_fields(keda_schemas, overlay):
    rendered = [doc for doc in overlay if doc["kind"] in keda_schemas]
    assert {doc["kind"] for doc in rendered} == {"ScaledObject", "TriggerAuthentication"}
    for doc in rendered:
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
        assert doc["metadata"]["namespace"] == NAMESPACE
        assert _keda_errors(doc, keda_schemas) == []


def test_the_keda_validation_rejects_misspelled_fields(keda_schemas):
    scaled = copy.deepcopy(keda_objects()["ScaledObject"])
    scaled["spec"]["minReplicas"] = 0  # the HPA's name, not KEDA's
    scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behaviour"] = {}
    errors = _keda_errors(scaled, keda_schemas)
    assert any("minReplicas" in e for e in errors) and any("behaviour" in e for e in errors)


# Trigger metadata is a free-form map in the CRD; these are the keys KEDA's scaler docs list.
SCALER_METADATA = {
    "gcp-pubsub": {"required": {"subscriptionName"}, "allowed": {
        "mode", "value", "activationValue", "aggregation", "valueIfNull", "timeHorizon",
        "subscriptionName", "subscriptionNameFromEnv", "topicName", "topicNameFromEnv",
        "credentialsFromEnv", "credentialsFromEnvFile"}},
    "metrics-api": {"required": {"url", "valueLocation", "targetValue"}, "allowed": {
        "url", "valueLocation", "targetValue", "activationTargetValue", "format", "authMode",
        "unsafeSsl", "method"}},
}


def test_trigger_metadata_uses_the_scalers_documented_keys():
    triggers = keda_objects()["ScaledObject"]["spec"]["triggers"]
    assert sorted(t["type"] for t in triggers) == ["gcp-pubsub", "metrics-api"]
    for trigger in triggers:
        keys = set(trigger["metadata"])
        known = SCALER_METADATA[trigger["type"]]
        assert known["required"] <= keys, trigger["name"]
        assert keys <= known["allowed"], (trigger["name"], keys - known["allowed"])
        for value in trigger["metadata"].values():
            assert isinstance(value, str), "KEDA metadata values are strings"


def test_managed_certificate_names_the_domain(https_overlay):
    cert = by_kind(https_overlay, "ManagedCertificate")["imageflow-cert"]
    assert cert["apiVersion"] == "networking.gke.io/v1"
    assert cert["metadata"]["namespace"] == NAMESPACE
    assert cert["spec"]["domains"] == ["images.acme.example"]
    ingress = by_kind(https_overlay, "Ingress")["imageflow"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["networking.gke.io/managed-certificates"] == "imageflow-cert"
    assert annotations["networking.gke.io/v1beta1.FrontendConfig"] in by_kind(https_overlay, "FrontendConfig")


# ---------------------------------------------------------------- cross-checks: settings --
def test_configmap_holds_only_settings_the_code_reads(base):
    unknown = set(config_map(base)) - set(ENV_NAMES)
    assert unknown == set()


def test_the_configmap_sets_only_known_settings(base):
    """The ConfigMap carries only what differs from the code's defaults (test_config_defaults.py);
    what never belongs in it is said here, with why."""
    assert set(config_map(base)) <= set(ENV_NAMES) | {"LOG_FORMAT"}
    assert set(NOT_IN_CONFIGMAP) <= set(ENV_NAMES), "stale NOT_IN_CONFIGMAP entries"
    assert not set(NOT_IN_CONFIGMAP) & set(config_map(base))


def test_containers_set_only_known_variables(overlay):
    for name, deployment in by_kind(overlay, "Deployment").items():
        for item in container(deployment).get("env", []):
            assert item["name"] in ENV_NAMES or item["name"] in TOOL_ENV, (name, item["name"])


SECRET_SETTINGS = {"SENDGRID_API_KEY", "API_KEYS", "URL_SIGNING_SECRET"}


def test_secrets_come_from_a_secret_never_a_configmap(overlay):
    for doc in overlay:
        assert doc["kind"] != "Secret", "secret values are never committed: deploy.sh creates the Secret"
        if doc["kind"] == "ConfigMap":
            assert not SECRET_SETTINGS & set(doc.get("data", {}))
    deployments = by_kind(overlay, "Deployment")
    # The manager signs the zip link of job.completed, the handler verifies it: one Secret for both.
    for service in ("image-handler", "interaction-manager"):
        env = {item["name"]: item for item in container(deployments[service])["env"]}
        for name in ("API_KEYS", "URL_SIGNING_SECRET"):
            ref = env[name]["valueFrom"]["secretKeyRef"]
            # Not optional: a missing Secret keeps the pod from starting instead of serving an open API.
            assert (ref["name"], ref["key"], ref["optional"]) == ("imageflow-secrets", name, False), (service, name)
    for service in ("image-processor", "frontend"):   # they sign nothing: the keys stay out of them
        names = {item["name"] for item in container(deployments[service]).get("env", [])}
        assert not SECRET_SETTINGS & names, service


def test_the_gke_overlay_sends_every_services_traces_to_cloud_trace(base, overlay, monkeypatch):
    """imageflow/tracing.py reads the standard OTEL_* names: off in the base (as locally), Cloud
    Trace in the overlay for each service, with a sampler the SDK knows (whole jobs sampled)."""
    from opentelemetry.sdk.trace import sampling

    from imageflow import tracing

    assert tracing.exporter_name(config_map(base)) == "none"
    for name in SERVICES:
        env = container_env(by_kind(overlay, "Deployment")[name], overlay)
        assert tracing.exporter_name(env) == "gcp_trace", name
        for var in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
            monkeypatch.setenv(var, env[var])
        sampler = sampling._get_from_env_or_default()
        assert isinstance(sampler, sampling.ParentBased), "a job's spans follow its root's decision"
        assert sampler.get_description() == "ParentBased{root:TraceIdRatioBased{1.0},remoteParentSampled:" \
            "AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,localParentSampled:AlwaysOnSampler," \
            "localParentNotSampled:AlwaysOffSampler}"


def test_topic_and_subscription_names_are_the_codes(base):
    data = config_map(base)
    defaults = Topics()
    for attr, var in Topics.ENV.items():
        assert data[var] == getattr(defaults, attr), var


def test_the_settings_load_from_the_rendered_configmap(overlay):
    """Each service's environment is a valid Settings for the GCP backend, bound to all
    interfaces (the probes and the load balancer come from outside the pod)."""
    for name in SERVICES:
        env = container_env(by_kind(overlay, "Deployment")[name], overlay)
        settings = Settings.from_env(env)
        assert settings.backend == "gcp"
        assert settings.gcp_project == SAMPLE_CONFIG["GCP_PROJECT"]
        assert settings.gcs_bucket == SAMPLE_CONFIG["GCS_BUCKET"]
        assert settings.public_base_url == SAMPLE_CONFIG["PUBLIC_BASE_URL"]
        assert settings.bind_host == "0.0.0.0"
        assert settings.topics == Topics()
        # Behind GKE's load balancer the caller is the address it records in X-Forwarded-For.
        assert settings.rate_limit_proxy_hops == 2
        # One key cannot take the whole system: shipped with quotas (0, unbounded, is the local default).
        assert settings.quota_active_jobs > 0 and settings.quota_active_images >= settings.max_files_per_job


def test_the_base_alone_fails_fast_without_project_values(base):
    """Applied without the overlay, the services refuse to start rather than guess a project."""
    from imageflow.settings import SettingsError
    env = container_env(by_kind(base, "Deployment")["image-processor"], base)
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_the_overlay_fills_in_the_project(overlay):
    deployments = by_kind(overlay, "Deployment")
    for name, param in (("image-handler", "IMAGE_HANDLER_IMAGE"), ("interaction-manager", "INTERACTION_MANAGER_IMAGE"),
                        ("image-processor", "IMAGE_PROCESSOR_IMAGE"), ("frontend", "FRONTEND_IMAGE")):
        assert container(deployments[name])["image"] == SAMPLE_PARAMS[param]
    assert not [doc for doc in overlay if doc["metadata"]["name"] == "deploy-params"], "local-config only"
    for doc in overlay:
        assert "PROJECT_ID" not in yaml.safe_dump(doc), doc["metadata"]["name"]


# ---------------------------------------------------------------- cross-checks: serving --
def _probe_paths(deployment: dict) -> dict[str, str]:
    spec = container(deployment)
    return {kind: spec[kind]["httpGet"]["path"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")
            if kind in spec}


def _ingress_backends(docs) -> set[str]:
    ingress = by_kind(docs, "Ingress")["imageflow"]
    return {p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}


def test_probes_hit_routes_the_services_serve(overlay, routes):
    """Pods behind the load balancer are ready on a local check (/healthz): readiness on
    /readyz, which calls Firestore, GCS and Pub/Sub, would pull every pod out of the load
    balancer at once during a blip in any of them. The others report their backends."""
    deployments = by_kind(overlay, "Deployment")
    public = _ingress_backends(overlay)
    for name in SERVICES:
        paths = _probe_paths(deployments[name])
        assert paths["livenessProbe"] == "/healthz"
        assert paths["readinessProbe"] == ("/healthz" if name in public else "/readyz"), name
        assert set(paths.values()) <= routes[name], name


def test_ports_agree_between_container_env_service_and_probes(overlay):
    deployments, services = by_kind(overlay, "Deployment"), by_kind(overlay, "Service")
    expected = {"image-handler": 8080, "interaction-manager": 8081, "image-processor": 8082, "frontend": 8080}
    for name, port in expected.items():
        spec = container(deployments[name])
        ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
        assert ports == {"http": port}, name
        env = {item["name"]: item.get("value") for item in spec.get("env", [])}
        if name in ("interaction-manager", "image-processor"):
            assert env["PORT"] == str(port)
        if name == "image-handler":
            assert env["IMAGEFLOW_PORT"] == str(port)
        for probe in _probe_paths(deployments[name]):
            assert spec[probe]["httpGet"]["port"] in ("http", port)
        service = services[name]
        assert service["spec"]["selector"] == deployments[name]["spec"]["selector"]["matchLabels"]
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_dockerfiles_expose_the_container_ports(overlay):
    """When the Dockerfiles exist (written separately), their ports are the manifests'."""
    checked = 0
    for name in SERVICES:  # one Dockerfile, the port a build argument: deploy.sh's build passes it
        port = container(by_kind(overlay, "Deployment")[name])["ports"][0]["containerPort"]
        assert f"EXPOSE ${{PORT}}" in (ROOT / "Dockerfile").read_text()
        assert f"SERVICE={name}, --build-arg, PORT={port}," in _deploy_build_args(), name
    for name, path in (("frontend", "frontend/Dockerfile"),):
        dockerfile = ROOT / path
        if not dockerfile.exists():
            continue
        port = container(by_kind(overlay, "Deployment")[name])["ports"][0]["containerPort"]
        text = dockerfile.read_text()
        exposed = {int(p) for p in re.findall(r"^\s*EXPOSE\s+(\d+)", text, re.M)}
        assert not exposed or port in exposed, (path, exposed, port)
        checked += 1
    if not checked:
        pytest.skip("no Dockerfile written yet")


def _deploy_build_args() -> str:
    import subprocess
    plan = subprocess.run(["bash", str(ROOT / "scripts/deploy.sh"), "--project", "acme-images", "--tag", "v1",
                           "--dry-run", "--allow-open-api"], capture_output=True, text=True, check=True,
                          env={**__import__("os").environ, "EMAIL_FROM": "a@b.example", "SENDGRID_API_KEY": ""})
    return plan.stdout


def test_frontend_matches_its_nginx_image(overlay):
    """frontend/Dockerfile and its nginx template: the port, the health route, the API
    pass-through, and the writable directories a read-only root needs."""
    template = ROOT / "frontend/nginx/default.conf.template"
    if not template.exists():
        pytest.skip("frontend/nginx not written yet")
    text = template.read_text()
    deployment = by_kind(overlay, "Deployment")["frontend"]
    spec = container(deployment)
    assert re.search(rf"listen\s+{spec['ports'][0]['containerPort']};", text)
    for probe in ("livenessProbe", "readinessProbe"):
        assert re.search(rf"location\s+=\s+{re.escape(spec[probe]['httpGet']['path'])}\s*{{", text), probe
    url = urlparse({e["name"]: e["value"] for e in spec["env"]}["IMAGE_HANDLER_URL"])
    assert "${IMAGE_HANDLER_URL}" in text
    handler = by_kind(overlay, "Service")[url.hostname]
    assert (url.port or 80) in {p["port"] for p in handler["spec"]["ports"]}
    mounts = {m["mountPath"] for m in spec["volumeMounts"]}
    assert {"/tmp", "/etc/nginx/conf.d"} <= mounts
    user = re.findall(r"^USER\s+(\d+)", (ROOT / "frontend/Dockerfile").read_text(), re.M)
    assert [int(u) for u in user][-1:] == [deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]]


def test_ingress_routes_the_api_and_the_web_page(overlay, routes):
    ingress = by_kind(overlay, "Ingress")["imageflow"]
    paths = {p["path"]: p for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert {path: p["backend"]["service"]["name"] for path, p in paths.items()} == {
        "/api": "image-handler", "/healthz": "image-handler", "/": "frontend"}
    assert any(rule.startswith("/api/") for rule in routes["image-handler"])
    assert "/healthz" in routes["image-handler"]
    services = by_kind(overlay, "Service")
    for p in paths.values():
        port_names = {sp["name"] for sp in services[p["backend"]["service"]["name"]]["spec"]["ports"]}
        assert p["backend"]["service"]["port"]["name"] in port_names
    assert ingress["metadata"]["annotations"]["kubernetes.io/ingress.global-static-ip-name"] == "imageflow-ip"


# ---------------------------------------------------------------- pod hardening ----------
def _quantity(value) -> float:
    value = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def test_pods_run_non_root_with_a_read_only_root(overlay):
    for name, deployment in by_kind(overlay, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        security = container(deployment)["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"] for m in container(deployment).get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{name}: a writable /tmp on the read-only root"


def test_every_container_has_requests_and_limits(overlay):
    for name, deployment in by_kind(overlay, "Deployment").items():
        resources = container(deployment)["resources"]
        for key in ("cpu", "memory", "ephemeral-storage"):
            assert _quantity(resources["requests"][key]) <= _quantity(resources["limits"][key]), (name, key)


def _memory_mib(deployment: dict) -> tuple[float, float]:
    resources = container(deployment)["resources"]
    return (_quantity(resources["requests"]["memory"]) / 2**20, _quantity(resources["limits"]["memory"]) / 2**20)


def _processor_needs_mib(settings: Settings) -> float:
    """What a processor pod can hold at most: the main process idle (measured by
    bench/processor_memory.py), the inputs of the tasks it holds and its URL downloads, and its
    render workers, each stopped past PROCESSOR_WORKER_MEMORY_MB."""
    measured = json.loads((ROOT / "bench/processor_memory.json").read_text())
    largest_input = max(settings.max_upload_bytes, settings.fetch_max_bytes)  # an upload, or a URL's download
    held_inputs = settings.processor_in_flight * largest_input / 2**20
    return (measured["idle_mib"] + held_inputs + settings.fetch_max_in_flight_bytes / 2**20
            + settings.processor_concurrency * settings.processor_worker_memory_mb)


def test_processor_memory_is_what_its_capped_workers_and_its_tasks_can_hold(overlay):
    """Issue 27 M1: sized from the render workers' cap, not from an uncapped in-process render
    (4.5 GiB, twice the price per worker): 5-50% headroom over the most the pod can hold."""
    settings = Settings.from_env(container_env(by_kind(overlay, "Deployment")["image-processor"], overlay))
    assert settings.processor_worker_memory_mb > 0, "the workers must be capped for this sizing to hold"
    needed = _processor_needs_mib(settings)
    request, limit = _memory_mib(by_kind(overlay, "Deployment")["image-processor"])
    assert 1.05 * needed <= limit <= 1.5 * needed, (needed, limit)
    assert request == limit, "GKE Autopilot sets limits to the requests: size the request"


def test_url_imports_fit_in_the_memory_of_the_processor_that_runs_them(overlay):
    """URL imports run inside the processor's tasks (services/image_processor/url_fetch.py): each
    download streams into the blob store, and all of a processor's downloads hold at most
    FETCH_MAX_IN_FLIGHT_BYTES between them; the stored input is then read once, as an upload's is,
    and rendered in a capped worker. (A 512 MiB interaction manager ran out at four concurrent URL
    jobs when it did the downloads, holding each one twice.)"""
    processing = (ROOT / "services/image_processor/processing.py").read_text()
    assert "UrlFetcher(" in processing, "the processor no longer fetches URLs: size whoever does"
    settings = Settings.from_env(config_map(overlay))
    needed = _processor_needs_mib(settings)  # counts each task it holds at FETCH_MAX_BYTES if that is larger
    _, limit = _memory_mib(by_kind(overlay, "Deployment")["image-processor"])
    assert limit >= needed, (needed, limit)


def test_termination_grace_covers_the_processor_drain(overlay):
    deployment = by_kind(overlay, "Deployment")["image-processor"]
    drain = Settings.from_env(container_env(deployment, overlay)).drain_seconds
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= drain + 15, "drain, then nack the rest and close the clients"
    assert "replicas" not in deployment["spec"], "KEDA owns the processor's replica count"


def test_every_deployment_has_a_matching_disruption_budget(overlay):
    budgets = by_kind(overlay, "PodDisruptionBudget")
    for name, deployment in by_kind(overlay, "Deployment").items():
        assert budgets[name]["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        replicas = deployment["spec"].get("replicas")
        if replicas is not None and "minAvailable" in budgets[name]["spec"]:
            assert budgets[name]["spec"]["minAvailable"] < replicas, f"{name}: the budget would block every drain"


def test_the_image_handler_scales_with_its_load(overlay):
    """Issue 27 M7: the API was two fixed pods that every photo the page sent went through. An
    HPA owns its replica count (2 to 10, on CPU), above its disruption budget."""
    [hpa] = [h for h in by_kind(overlay, "HorizontalPodAutoscaler").values()
             if h["spec"]["scaleTargetRef"]["name"] == "image-handler"]
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert "replicas" not in by_kind(overlay, "Deployment")["image-handler"]["spec"], "the HPA owns it"
    budget = by_kind(overlay, "PodDisruptionBudget")["image-handler"]["spec"]["minAvailable"]
    assert budget < hpa["spec"]["minReplicas"] and hpa["spec"]["maxReplicas"] >= 4 * hpa["spec"]["minReplicas"] // 2
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and 50 <= metric["resource"]["target"]["averageUtilization"] <= 80


def test_workload_identity_annotations(overlay):
    accounts = by_kind(overlay, "ServiceAccount")
    deployments = by_kind(overlay, "Deployment")
    for name in SERVICES:
        assert deployments[name]["spec"]["template"]["spec"]["serviceAccountName"] == name
        gsa = accounts[name]["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
        assert gsa == f"imageflow-{name}@{SAMPLE_PARAMS['GSA_DOMAIN']}"
    assert "annotations" not in accounts["frontend"]["metadata"], "the frontend needs no Google identity"


# ---------------------------------------------------------------- network policies -------
def _selected(policy: dict, labels: dict) -> bool:
    selector = policy["spec"]["podSelector"]
    wanted = selector.get("matchLabels", {})
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", "only In is modelled here"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return all(labels.get(k) == v for k, v in wanted.items())


def _ingress_sources(policies: dict, labels: dict) -> list[dict]:
    sources = []
    for policy in policies.values():
        if _selected(policy, labels) and "Ingress" in policy["spec"]["policyTypes"]:
            for rule in policy["spec"].get("ingress", []):
                sources += rule.get("from", [{"anywhere": True}])
    return sources


def test_network_policies_expose_only_the_ingress_backends(overlay):
    policies = by_kind(overlay, "NetworkPolicy")
    deny = [p for p in policies.values() if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress")]
    assert deny, "a default-deny ingress policy"
    ingress_backends = {p["backend"]["service"]["name"]
                        for p in by_kind(overlay, "Ingress")["imageflow"]["spec"]["rules"][0]["http"]["paths"]}
    from_outside = set()
    for name, deployment in by_kind(overlay, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        sources = _ingress_sources(policies, labels)
        if any("ipBlock" in s or "anywhere" in s for s in sources):
            from_outside.add(name)
    assert from_outside == ingress_backends == {"image-handler", "frontend"}


MANAGED_PROMETHEUS = {"namespaceSelector": {"matchExpressions": [
    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["gmp-system", "gke-gmp-system"]}]}}


def test_only_keda_and_the_metrics_collectors_reach_the_interaction_manager(overlay):
    policies = by_kind(overlay, "NetworkPolicy")
    labels = by_kind(overlay, "Deployment")["interaction-manager"]["spec"]["template"]["metadata"]["labels"]
    sources = _ingress_sources(policies, labels)
    assert sources == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}},
                        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "keda-operator"}}},
                       MANAGED_PROMETHEUS]
    processor = by_kind(overlay, "Deployment")["image-processor"]["spec"]["template"]["metadata"]["labels"]
    assert _ingress_sources(policies, processor) == [MANAGED_PROMETHEUS]


# ---------------------------------------------------------------- KEDA vs the code ------
def test_scaled_object_targets_the_processor_and_its_subscription(overlay):
    scaled = by_kind(overlay, "ScaledObject")["image-processor"]
    assert scaled["spec"]["scaleTargetRef"]["name"] in by_kind(overlay, "Deployment")
    pubsub = next(t for t in scaled["spec"]["triggers"] if t["type"] == "gcp-pubsub")
    settings = Settings()
    tasks_sub = next(s for s in topology.subscriptions(settings) if s.topic == settings.topics.tasks)
    assert pubsub["metadata"]["subscriptionName"] == tasks_sub.name == config_map(overlay)["TASKS_SUBSCRIPTION"]
    assert pubsub["metadata"]["mode"] == "SubscriptionSize"
    auth = by_kind(overlay, "TriggerAuthentication")[pubsub["authenticationRef"]["name"]]
    assert auth["spec"] == {"podIdentity": {"provider": "gcp"}}


def test_a_renamed_subscription_reaches_the_scaled_object(tmp_path):
    docs = render_overlay(tmp_path, config={**SAMPLE_CONFIG, "TASKS_SUBSCRIPTION": "acme-tasks"})
    pubsub = next(t for t in by_kind(docs, "ScaledObject")["image-processor"]["spec"]["triggers"]
                  if t["type"] == "gcp-pubsub")
    assert pubsub["metadata"]["subscriptionName"] == "acme-tasks" == config_map(docs)["TASKS_SUBSCRIPTION"]


def test_metrics_api_trigger_reads_the_interaction_managers_count(overlay, tmp_path):
    from services.interaction_manager.app import create_app

    scaled = by_kind(overlay, "ScaledObject")["image-processor"]
    trigger = next(t for t in scaled["spec"]["triggers"] if t["type"] == "metrics-api")
    url = urlparse(trigger["metadata"]["url"])
    service = by_kind(overlay, "Service")["interaction-manager"]
    assert url.hostname == f"interaction-manager.{NAMESPACE}.svc.cluster.local"
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
    app = create_app(Settings.from_env({"IMAGEFLOW_DATA_DIR": str(tmp_path)}))
    response = app.test_client().get(url.path)
    assert response.status_code == 200
    assert response.json[trigger["metadata"]["valueLocation"]] == 0


def test_scaling_bounds_suit_a_late_metric():
    spec = keda_objects()["ScaledObject"]["spec"]
    assert spec["minReplicaCount"] == 0
    assert 1 < spec["maxReplicaCount"] <= 50
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    # The Pub/Sub metric is 60-120 s late: scaling down, and to zero, waits longer than that.
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 120
    assert spec["cooldownPeriod"] >= 120
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    targets = {t["type"]: t["metadata"] for t in spec["triggers"]}
    assert targets["gcp-pubsub"]["value"] == targets["metrics-api"]["targetValue"], \
        "both triggers count the same tasks: one target per replica"
    assert math.isclose(float(targets["metrics-api"]["activationTargetValue"]), 0)


# ---------------------------------------------------------------- from a clean checkout ---
def test_the_overlays_render_from_a_clean_checkout():
    """The overlays' inputs are committed (example values), so `kubectl kustomize` works on
    a fresh clone; deploy.sh renders its own copy with the project's values."""
    import subprocess

    for overlay_dir in ("k8s/overlays/gke", "k8s/overlays/gke-https"):
        docs = kustomize(ROOT / overlay_dir)
        assert by_kind(docs, "Deployment"), overlay_dir
    inputs = ["k8s/overlays/gke/params.env", "k8s/overlays/gke/config.env", "k8s/overlays/gke-https/params.env",
              "k8s/base/topology.env"]
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", *inputs], capture_output=True, text=True)
    assert ignored.stdout == "", "committed, not ignored"


def test_topology_env_is_generated_from_the_code(base):
    """k8s/base/topology.env is `python -m imageflow.setup env`: one place for the names."""
    lines = [line for line in (ROOT / "k8s/base/topology.env").read_text().splitlines()
             if line and not line.startswith("#")]
    assert dict(line.split("=", 1) for line in lines) == Topics().as_env(), \
        "regenerate: python -m imageflow.setup env (see the file's header)"
    assert "TOPIC=" not in (ROOT / "k8s/base/config.env").read_text(), "names only in topology.env"
    assert "imageflow-tasks" not in (ROOT / "keda/scaledobject.yaml").read_text(), "set by the overlay"


# ---------------------------------------------------------------- the load balancer -------
LOAD_BALANCER_IDLE_SECONDS = 600  # GKE external Application Load Balancer's keep-alive to backends


def _backend_config(docs, service_name: str) -> dict:
    annotation = by_kind(docs, "Service")[service_name]["metadata"]["annotations"]["cloud.google.com/backend-config"]
    return by_kind(docs, "BackendConfig")[json.loads(annotation)["default"]]


def test_every_load_balancer_backend_has_a_backend_config(overlay, routes):
    deployments = by_kind(overlay, "Deployment")
    for name in _ingress_backends(overlay):
        config = _backend_config(overlay, name)
        assert config["apiVersion"] == "cloud.google.com/v1"
        spec = config["spec"]
        # Uploads up to MAX_REQUEST_BYTES and archive.zip downloads outlast the 30 s default.
        assert spec["timeoutSec"] >= 300, name
        pod = deployments[name]["spec"]["template"]["spec"]
        assert 0 < spec["connectionDraining"]["drainingTimeoutSec"] <= pod["terminationGracePeriodSeconds"]
        check = spec["healthCheck"]
        assert check["requestPath"] != "/readyz", "a local check: a backend blip must not drain every pod"
        assert check["requestPath"] == container(deployments[name])["readinessProbe"]["httpGet"]["path"]
        assert check["port"] == container(deployments[name])["ports"][0]["containerPort"]
        if name in routes:
            assert check["requestPath"] in routes[name]
    assert by_kind(overlay, "BackendConfig")["image-handler"]["spec"]["timeoutSec"] >= 600


def test_keep_alives_outlast_the_load_balancer(overlay):
    """A backend that closes an idle connection before the load balancer does answers the
    next request on it with a reset: intermittent 502s."""
    env = {e["name"]: e.get("value") for e in container(by_kind(overlay, "Deployment")["image-handler"])["env"]}
    keep_alive = re.search(r"--keep-alive[ =](\d+)", env["GUNICORN_CMD_ARGS"])
    assert keep_alive and int(keep_alive.group(1)) > LOAD_BALANCER_IDLE_SECONDS
    nginx = (ROOT / "frontend/nginx/default.conf.template").read_text()
    timeout = re.search(r"^\s*keepalive_timeout\s+(\d+)s?;", nginx, re.M)
    assert timeout and int(timeout.group(1)) > LOAD_BALANCER_IDLE_SECONDS


def test_links_keep_https_behind_the_load_balancer(overlay, tmp_path):
    """The load balancer terminates TLS and says so in X-Forwarded-Proto; the API's links
    (self, results page, download all) must stay https://, or browsers block them."""
    import io

    from PIL import Image as PILImage

    from services.image_handler.app import create_app

    env = container_env(by_kind(overlay, "Deployment")["image-handler"], overlay)
    hops = Settings.from_env(env).forwarded_proto_hops
    assert hops >= 1
    app = create_app({"data_dir": tmp_path, "forwarded_proto_hops": hops, "public_base_url": "https://x.example"})
    png = io.BytesIO()
    PILImage.new("RGB", (4, 4)).save(png, "PNG")
    response = app.test_client().post(
        "/api/v1/jobs", data={"files": (io.BytesIO(png.getvalue()), "a.png"), "preset": "thumbnail"},
        headers={"X-Forwarded-Proto": "https"}, base_url="http://images.acme.example")
    assert response.status_code == 202, response.json
    assert response.json["links"]["self"].startswith("https://images.acme.example/")


# ---------------------------------------------------------------- operations --------------
def test_managed_prometheus_scrapes_every_services_metrics(overlay, routes):
    monitor = by_kind(overlay, "PodMonitoring")["imageflow"]
    assert monitor["apiVersion"] == "monitoring.googleapis.com/v1"
    [expression] = monitor["spec"]["selector"]["matchExpressions"]
    assert expression["key"] == "app.kubernetes.io/name" and sorted(expression["values"]) == sorted(SERVICES)
    [endpoint] = monitor["spec"]["endpoints"]
    deployments = by_kind(overlay, "Deployment")
    policy = by_kind(overlay, "NetworkPolicy")["metrics-from-managed-prometheus"]
    open_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    for name in SERVICES:
        assert endpoint["path"] in routes[name], name
        ports = {p["name"]: p["containerPort"] for p in container(deployments[name])["ports"]}
        assert ports[endpoint["port"]] in open_ports, name


def test_pods_spread_over_zones_and_nodes(overlay):
    for name, deployment in by_kind(overlay, "Deployment").items():
        pod = deployment["spec"]["template"]
        constraints = pod["spec"]["topologySpreadConstraints"]
        keys = {c["topologyKey"] for c in constraints}
        assert {"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= keys, name
        for c in constraints:
            assert c["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items(), name
            assert c["whenUnsatisfiable"] == "ScheduleAnyway", "a single-zone cluster still schedules"
