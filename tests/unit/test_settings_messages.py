"""Settings from the environment, and the wire format of messages."""
from __future__ import annotations

import json

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
