"""Settings from the environment, and the wire format of messages."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from imageflow.messages import JobCompleted, MessageError, Result, Task
from imageflow.settings import ENV_NAMES, Settings, SettingsError


def test_defaults_select_local_backends(tmp_path):
    s = Settings.from_env({"IMAGEFLOW_DATA_DIR": str(tmp_path)})
    assert s.backend == "local" and s.data_dir == tmp_path.resolve()
    assert s.public_base_url == "http://127.0.0.1:8080"
    assert s.topics.tasks_sub == "imageflow-tasks-processor" and s.topics.tasks_dlq == "imageflow-tasks-dlq"
    assert s.max_image_pixels == 50_000_000


def test_env_overrides():
    s = Settings.from_env({"IMAGEFLOW_PORT": "9000", "MAX_FILES_PER_JOB": "7", "TASKS_TOPIC": "t2",
                           "PUBLIC_BASE_URL": "https://img.example.com/"})
    assert (s.port, s.max_files_per_job, s.topics.tasks) == (9000, 7, "t2")
    assert s.public_base_url == "https://img.example.com"


def test_gcp_needs_project_and_bucket():
    with pytest.raises(SettingsError, match="GCP_PROJECT, GCS_BUCKET"):
        Settings.from_env({"IMAGEFLOW_BACKEND": "gcp"})
    assert Settings.from_env({"IMAGEFLOW_BACKEND": "gcp", "GCP_PROJECT": "p", "GCS_BUCKET": "b"}).backend == "gcp"


@pytest.mark.parametrize("env", [{"IMAGEFLOW_BACKEND": "azure"}, {"MAX_UPLOAD_BYTES": "lots"},
                                 {"MAX_FILES_PER_JOB": "-1"}])
def test_bad_values_fail_fast_naming_the_variable(env):
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)


def test_env_names_are_the_contract():
    for name in ("IMAGEFLOW_BACKEND", "IMAGEFLOW_DATA_DIR", "GCP_PROJECT", "GCS_BUCKET", "PUBLIC_BASE_URL",
                 "MAX_UPLOAD_BYTES", "MAX_IMAGE_PIXELS", "MAX_FILES_PER_JOB", "PROCESSOR_CONCURRENCY",
                 "SENDGRID_API_KEY", "EMAIL_FROM"):
        assert name in ENV_NAMES


def test_messages_round_trip_with_version():
    task = Task(job_id="j", image_id="i", input_path="j/input/i-a.png", output_path="j/output/i-a",
                operations=[{"op": "grayscale"}])
    wire = json.loads(task.encode())
    assert wire["v"] == 1 and wire["operations"] == [{"op": "grayscale"}]
    assert Task.decode(task.encode()) == task
    done = JobCompleted(job_id="j", status="completed", total=2, succeeded=2, failed=0, email=None,
                        results_url="http://x/jobs/j")
    assert JobCompleted.decode(done.encode()) == done


def test_unknown_fields_are_ignored_and_missing_ones_named():
    assert Result.decode({"v": 1, "job_id": "j", "image_id": "i", "status": "failed", "new": 1}).status == "failed"
    with pytest.raises(MessageError, match="image_id"):
        Result.decode({"v": 1, "job_id": "j", "status": "failed"})


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b'{"v": 2, "job_id": "j"}', b"\xff\xfe"])
def test_malformed_messages(raw):
    with pytest.raises(MessageError):
        Task.decode(raw)


def test_result_status_is_checked():
    with pytest.raises(MessageError):
        Result(job_id="j", image_id="i", status="done")


def test_result_error_code_travels_and_stays_compatible_with_version_1():
    failed = Result(job_id="j", image_id="i", status="failed", error="cannot read it", error_code="corrupt")
    wire = json.loads(failed.encode())
    assert wire["v"] == 1 and wire["error_code"] == "corrupt"
    assert Result.decode(failed.encode()).error_code == "corrupt"
    older = {k: v for k, v in wire.items() if k != "error_code"}  # from a processor of before
    assert Result.decode(older).error_code is None


# -- each process's port, and configuration read in one place (issue 23) -------------------
def test_each_process_listens_on_its_port_from_the_settings():
    s = Settings.from_env({"PORT": "9101", "IMAGEFLOW_PORT": "9000"})
    assert s.listen_port("image-handler") == 9000  # IMAGEFLOW_PORT, the API's
    assert s.listen_port("interaction-manager") == s.listen_port("image-processor") == 9101  # PORT, the container's
    defaults = Settings.from_env({})
    assert [defaults.listen_port(name) for name in ("image-handler", "interaction-manager", "image-processor",
                                                    "email-function")] == [8080, 8081, 8082, 8083]
    with pytest.raises(SettingsError, match="PORT must be an integer"):
        Settings.from_env({"PORT": "eighty"})  # was a bare ValueError from the service's main
    with pytest.raises(SettingsError, match="unknown service 'thumbnailer'"):
        defaults.listen_port("thumbnailer")


def _environment_reads(path: Path) -> set[str]:
    """The string names a module reads from os.environ / os.getenv."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        target = None
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            target = node.slice
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in {"os.environ.get", "os.getenv",
                                                                      "os.environ.setdefault"}:
            target = node.args[0] if node.args else None
        if isinstance(target, ast.Constant) and isinstance(target.value, str):
            names.add(target.value)
    return names


def test_settings_are_read_from_the_environment_only_by_imageflow_settings():
    """Every process reads its port, timeouts and the rest through Settings (the email function excepted:
    it is deployed from its folder alone, without the imageflow package)."""
    root = Path(__file__).resolve().parents[2]
    readers = {str(path.relative_to(root)): sorted(_environment_reads(path) & set(ENV_NAMES))
               for folder in ("imageflow", "services", "imageflow_cli") for path in (root / folder).rglob("*.py")}
    assert {path: names for path, names in readers.items() if names and path != "imageflow/settings.py"} == {}


def test_topology_is_data_the_settings_read():
    """settings imports topology, never the other way round (not even for type checking)."""
    root = Path(__file__).resolve().parents[2]
    imported = set()
    for node in ast.walk(ast.parse((root / "imageflow/topology.py").read_text())):
        if isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not {name for name in imported if name.endswith("settings")}, imported


def test_topology_table_lists_names_dead_letters_and_who_uses_what():
    from imageflow import topology

    t = Settings.from_env({"JOBS_TOPIC": "acme-jobs"}).topics
    rows = [line.split() for line in topology.table(t)]
    assert all(len(row) == 3 for row in rows)
    names = {var: value for kind, var, value in rows if kind == "name"}
    assert names["JOBS_DLQ_TOPIC"] == "acme-jobs-dlq" and names["JOBS_DLQ_SUBSCRIPTION"] == "acme-jobs-dlq-im"
    assert names["NOTIFICATIONS_DLQ_SUBSCRIPTION"] == t.notifications_dlq_sub
    assert ["dead-letter", t.jobs_sub, "acme-jobs-dlq"] in rows
    assert ["publish", "interaction-manager", "acme-jobs"] in rows  # joined uploads send job.submitted
    assert ["subscribe", "email-function", t.notifications_sub] in rows
    # every subscription the topology creates that dead-letters has its dead-letter row
    made = topology.subscriptions(Settings.from_env({"JOBS_TOPIC": "acme-jobs"}))
    assert {(s.name, s.dead_letter_topic) for s in made if s.dead_letter_topic} == \
        {(sub, dlq) for kind, sub, dlq in rows if kind == "dead-letter"}
    gcp = topology.table(t, email_subscription=False)
    assert not any(t.notifications_sub in line for line in gcp if not line.startswith("name "))
