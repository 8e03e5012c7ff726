"""What the web page's editor needs beside the jobs API: operations checked before a byte is
uploaded, named presets saved per caller, and light polling of a job (ETag with 304, gzip).

- ``POST /api/v1/operations/validate`` ``{"operations": [...]}`` or ``{"preset": name}`` ->
  ``200 {"operations": [...]}`` resolved (defaults filled in), or ``422`` whose details name
  each problem's step counting from 1, as the page does, and its field.
- ``GET /api/v1/presets``, ``POST /api/v1/presets`` ``{"name", "operations"}``,
  ``DELETE /api/v1/presets/<name>``: the caller's own presets (the API key's owner; one shared
  set while keys are off), stored through the JobStore port.
- ``GET /api/v1/jobs/<job_id>`` gets a strong ETag over its body and answers ``304`` to a
  matching ``If-None-Match``; its JSON is gzipped for clients that accept it.
"""
from __future__ import annotations

import re

from flask import Blueprint, Flask, current_app, g, jsonify, request
from flask_compress import Compress

from imageflow.domain import utcnow
from imageflow.engine.schema import OperationsError, resolve_operations
from imageflow.jobstore import SavedPreset

from .bodies import json_body
from .errors import ClientError
from .openapi import PresetRequest, ValidateRequest

editor = Blueprint("editor", __name__, url_prefix="/api/v1")

MAX_PRESETS_PER_CALLER = 100
PRESET_NAME = re.compile(r"^[\w][\w .,()+&'/-]{0,59}$")   # what a person types: "Web, small (800)"
LIGHT_POLL_ENDPOINTS = {"api.status", "api.images"}         # GET /api/v1/jobs/<job_id>, and its /images pages


def _ctx():
    return current_app.extensions["imageflow"]


def _steps(details: list[dict]) -> list[dict]:
    """The schema's problems with the step counted from 1 (``step``), as the page shows it."""
    out = []
    for detail in details or []:
        index = detail.get("index")
        out.append({**detail, "step": index + 1 if isinstance(index, int) else None})
    return out


def _sentence(detail: dict) -> str:
    where = f"step {detail['step']}" if detail["step"] else "operations"
    if detail.get("op"):
        where += f" ({detail['op']})"
    field = detail.get("field")
    return f"{where}: {field + ' ' if field and field != 'op' else ''}{detail['message']}"


def _resolve(preset, operations) -> list[dict]:
    try:
        return resolve_operations(preset or None, operations)
    except OperationsError as exc:
        details = _steps(exc.details)
        message = _sentence(details[0]) if details else exc.message
        raise ClientError(422, "invalid_operations", message, details) from None


@editor.post("/operations/validate")
def validate_operations():
    """Check operations (or a preset) the way job creation will, without creating anything."""
    body = json_body(ValidateRequest, example='{"operations": [...]}')
    if body.get("operations") is None and not body.get("preset"):
        raise ClientError(400, "malformed_request", "give \"operations\" (a list) or \"preset\" (a name)")
    return jsonify(operations=_resolve(body.get("preset"), body.get("operations")))


def _owner() -> str:
    g.caller = _ctx().auth.caller(request.headers)
    return g.caller.owner or ""   # keys off: everyone shares one set


def _view(preset: SavedPreset) -> dict:
    return {"name": preset.name, "operations": preset.operations, "created_at": preset.created_at,
            "updated_at": preset.updated_at}


@editor.get("/presets")
def list_presets():
    return jsonify(presets=[_view(p) for p in _ctx().backends.jobs.list_presets(_owner())])


@editor.post("/presets")
def save_preset():
    owner = _owner()
    body = json_body(PresetRequest, example='{"name": "...", "operations": [...]}')
    name = body.get("name").strip() if isinstance(body.get("name"), str) else ""
    if not PRESET_NAME.match(name):
        raise ClientError(400, "invalid_preset_name", "name a preset with 1 to 60 letters, digits, spaces or "
                                                      "- _ . , ( ) + & ' /, starting with a letter or digit",
                          [{"field": "name", "message": "not a valid preset name"}])
    if body.get("operations") is None:
        raise ClientError(400, "malformed_request", "give the preset's \"operations\" (a list)")
    operations = _resolve(None, body.get("operations"))
    if not operations:
        raise ClientError(422, "invalid_operations", "a preset needs at least one operation",
                          [{"step": None, "index": None, "op": None, "field": None, "message": "no operations"}])
    store = _ctx().backends.jobs
    existing = {p.name for p in store.list_presets(owner)}
    if name not in existing and len(existing) >= MAX_PRESETS_PER_CALLER:
        raise ClientError(409, "too_many_presets", f"at most {MAX_PRESETS_PER_CALLER} presets per caller; "
                                                   "delete one first")
    now = utcnow()
    saved = store.save_preset(SavedPreset(owner=owner, name=name, operations=operations, created_at=now,
                                          updated_at=now))
    response = jsonify(_view(saved))
    response.status_code = 200 if name in existing else 201
    return response


@editor.delete("/presets/<path:name>")
def delete_preset(name: str):
    if not _ctx().backends.jobs.delete_preset(_owner(), name):
        raise ClientError(404, "preset_not_found", f"no saved preset named {name[:64]!r}")
    return "", 204


def register_editor_api(app: Flask) -> None:
    """Add the editor's routes, and the ETag and gzip of the job view, to the app."""
    app.register_blueprint(editor)
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


__all__ = ["editor", "register_editor_api"]
