"""A job refused half-way because storage failed leaves no originals behind (no orphans)."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from imageflow.blobstore.local import LocalBlobStore
from imageflow.bus.sqlite import SqliteBus
from imageflow.jobstore.sqlite import SqliteJobStore
from imageflow.settings import Settings
from imageflow.topology import ensure
from services.image_handler.errors import ClientError
from services.image_handler.intake import Intake, JobRequest


class Upload:
    def __init__(self, name: str, data: bytes):
        self.filename, self._data = name, data

    def read(self, limit: int) -> bytes:
        return self._data[:limit]


class FailingThirdPut(LocalBlobStore):
    def __init__(self, root):
        super().__init__(root)
        self.puts = 0

    def put(self, path, data, content_type, **kwargs):
        self.puts += 1
        if self.puts == 3:
            raise OSError("disk full")
        super().put(path, data, content_type, **kwargs)


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("failing", ["blobs", "jobs"])
def test_storage_failure_mid_upload_leaves_nothing(tmp_path, failing):
    settings = Settings.from_env({"IMAGEFLOW_DATA_DIR": str(tmp_path)})
    blobs = FailingThirdPut(tmp_path / "blobs") if failing == "blobs" else LocalBlobStore(tmp_path / "blobs")
    jobs, bus = SqliteJobStore(tmp_path / "jobs.sqlite3"), SqliteBus(tmp_path / "bus.sqlite3")
    ensure(bus, settings)
    if failing == "jobs":
        jobs.create_job = lambda *a: (_ for _ in ()).throw(RuntimeError("database is locked"))
    with pytest.raises(ClientError) as refused:
        Intake(settings, blobs, jobs, bus).create_job([Upload(f"p{i}.png", png()) for i in range(4)],
                                                      JobRequest(operations=[]))
    assert refused.value.status == 503 and "nothing was kept" in refused.value.message
    assert blobs.list("") == [] and [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []
    assert jobs.list_jobs() == [] and bus.backlog(settings.topics.jobs_sub) == 0
