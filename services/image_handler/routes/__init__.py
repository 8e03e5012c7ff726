"""The REST API (ARCHITECTURE.md), /api/v1, one blueprint per resource:

- ``jobs``       create, list, read (and its image pages), rename, delete; the caller's stats
- ``uploads``    files into an open job (multipart or direct-upload targets), the local PUT, close
- ``downloads``  originals, outputs, previews, the zip, the CSV report
- ``editor``     the operations' schema and limits, the OpenAPI document, validation, saved presets
- ``lifecycle``  cancel, retry, re-run

``context`` is what they share for a request; the work itself is in the Flask-free use cases
(services.image_handler.intake, lifecycle, upload_targets).
"""
from __future__ import annotations

from flask import Flask, request
from flask_compress import Compress

from . import downloads, editor, jobs, lifecycle, uploads

BLUEPRINTS = (jobs.jobs, uploads.uploads, downloads.downloads, editor.editor, lifecycle.lifecycle_api)
LIGHT_POLL_ENDPOINTS = {"jobs.status", "jobs.images"}   # GET /api/v1/jobs/<job_id>, and its /images pages


def register(app: Flask) -> None:
    """Add the API's routes, and the light polling of the job view, to the app."""
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    _register_light_polling(app)


def _register_light_polling(app: Flask) -> None:
    """The job view gets a strong ETag over its body and answers ``304`` to a matching
    ``If-None-Match``; its JSON is gzipped for clients that accept it."""
    app.config.setdefault("COMPRESS_ALGORITHM", "gzip")
    app.config.setdefault("COMPRESS_REGISTER", False)   # only the job view: downloads are already compressed
    compress = Compress(app)

    @app.after_request
    def light_poll(response):
        if request.endpoint not in LIGHT_POLL_ENDPOINTS or request.method != "GET" or response.status_code != 200:
            return response
        response.add_etag()                          # over the JSON as sent, before compression
        response.headers["Cache-Control"] = "no-cache"
        response = compress.after_request(response)  # gzip; the ETag becomes "<hash>:gzip"
        return response.make_conditional(request)
