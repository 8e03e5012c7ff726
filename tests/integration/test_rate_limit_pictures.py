"""The rate limit spares a job's pictures: a job page scrolled through hundreds of photos
loads two previews per card, far past the API's rate (services/image_handler/app.py)."""
from __future__ import annotations

import io

from PIL import Image

from services.image_handler.app import create_app


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 80, 40)).save(buf, "PNG")
    return buf.getvalue()


def test_previews_and_files_are_not_rate_limited_but_the_api_is(tmp_path):
    app = create_app({"data_dir": tmp_path / "data", "rate_limit_per_second": 0.01, "rate_limit_burst": 3})
    try:
        client = app.test_client()
        job = client.post("/api/v1/jobs", data={"files": [(io.BytesIO(png()), "a.png")], "preset": "thumbnail"},
                          content_type="multipart/form-data").json
        base = f"/api/v1/jobs/{job['job_id']}/images/{job['images'][0]['image_id']}"
        pictures = [client.get(f"{base}/{which}").status_code
                    for _ in range(10) for which in ("input", "input/preview", "output/preview")]
        assert 429 not in pictures, pictures
        api = [client.get(f"/api/v1/jobs/{job['job_id']}").status_code for _ in range(5)]
        assert 429 in api, api
    finally:
        app.extensions["imageflow"].backends.close()
