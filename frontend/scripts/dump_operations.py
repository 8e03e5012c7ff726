"""Write the server's GET /api/v1/operations answer to src/test/fixtures/operations.json.

The component tests run against this copy of the real schema; rerun after changing
imageflow/engine/schema.py:  (from the repo root) .venv/bin/python frontend/scripts/dump_operations.py
"""
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run from anywhere: the core package lives at the repo root


from services.image_handler.intake import ACCEPTED_TYPES
from imageflow.engine.schema import PRESETS, operations_json_schema
from imageflow.settings import Settings

TARGET = REPO / "frontend" / "src" / "test" / "fixtures" / "operations.json"


def fixture_text(settings: Settings | None = None) -> str:
    """The fixture as this code would write it (tests/unit/test_frontend_fixture.py compares).
    The component tests use a small MAX_FILES_PER_JOB (100), so the page's limits are seen."""
    settings = settings or Settings(max_files_per_job=100)
    body = {
        "schema": operations_json_schema(),
        "presets": PRESETS,
        "limits": {
            "max_upload_bytes": settings.max_upload_bytes,
            "max_request_bytes": settings.max_request_bytes,
            "max_files_per_job": settings.max_files_per_job,
            "max_image_pixels": settings.max_image_pixels,
            "accepted_types": ACCEPTED_TYPES,
        },
    }
    return json.dumps(body, indent=1) + "\n"


if __name__ == "__main__":
    TARGET.write_text(fixture_text(), encoding="utf-8")
    print(f"wrote {TARGET}")
