"""What clients and the web page's editor read to build a job, and the presets they save:

- ``GET /api/v1/operations``: the operations' JSON Schema, the built-in presets and the upload
  limits; ``GET /api/v1/openapi.json``: the OpenAPI document (both public).
- ``POST /api/v1/operations/validate`` ``{"operations": [...]}`` or ``{"preset": name}`` ->
  ``200 {"operations": [...]}`` resolved (defaults filled in), or ``422`` whose details name
  each problem's step counting from 1, as the page does, and its field (public).
- ``GET /api/v1/presets``, ``POST /api/v1/presets`` ``{"name", "operations"}``,
  ``DELETE /api/v1/presets/<name>``: the caller's own presets (the API key's owner; one shared
  set while keys are off), stored through the JobStore port.
"""
from __future__ import annotations

import re

from flask import g, jsonify

from imageflow.domain import utcnow
from imageflow.engine.schema import PRESETS, OperationsError, operations_json_schema, resolve_operations
from imageflow.jobstore import Presets, SavedPreset

from ..bodies import json_body
from ..errors import Refused, RefusalCode
from ..intake import ACCEPTED_TYPES
from ..openapi import PresetRequest, ValidateRequest
from ..openapi import document as openapi_document
from ..url_lists import MAX_CSV_BYTES
from .context import api_blueprint, ctx

editor = api_blueprint("editor", __name__)

MAX_PRESETS_PER_CALLER = 100
PRESET_NAME = re.compile(r"^[\w][\w .,()+&'/-]{0,59}$")   # what a person types: "Web, small (800)"


@editor.get("/operations")
def operations():
    """The operations' JSON Schema, the presets and the upload limits (for the frontend)."""
    s = ctx().settings
    # api_keys_required: the page shows its API-key field only when the server asks for keys
    return jsonify(schema=operations_json_schema(), presets=PRESETS, api_keys_required=ctx().auth.enabled, limits={
        "max_upload_bytes": s.max_upload_bytes, "max_request_bytes": s.max_request_bytes,
        "max_files_per_job": s.max_files_per_job, "max_urls_per_job": s.max_urls_per_job, "max_csv_bytes": MAX_CSV_BYTES,
        "max_fetch_bytes": s.fetch_max_bytes,
        "max_image_pixels": s.max_image_pixels,
        "accepted_types": ACCEPTED_TYPES})


@editor.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document of this API (services.image_handler.openapi)."""
    return jsonify(openapi_document(keys_required=ctx().auth.enabled))


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
        raise Refused(RefusalCode.INVALID_OPERATIONS, message, details) from None


@editor.post("/operations/validate")
def validate_operations():
    """Check operations (or a preset) the way job creation will, without creating anything."""
    body = json_body(ValidateRequest, example='{"operations": [...]}')
    if body.get("operations") is None and not body.get("preset"):
        raise Refused(RefusalCode.MALFORMED_REQUEST, "give \"operations\" (a list) or \"preset\" (a name)")
    return jsonify(operations=_resolve(body.get("preset"), body.get("operations")))


def _owner() -> str:
    return g.caller.owner or ""   # keys off: everyone shares one set


def _view(preset: SavedPreset) -> dict:
    return {"name": preset.name, "operations": preset.operations, "created_at": preset.created_at,
            "updated_at": preset.updated_at}


def _presets() -> Presets:
    """The store, as far as presets go (all these routes use of it)."""
    return ctx().backends.jobs


@editor.get("/presets")
def list_presets():
    return jsonify(presets=[_view(p) for p in _presets().list_presets(_owner())])


@editor.post("/presets")
def save_preset():
    owner = _owner()
    body = json_body(PresetRequest, example='{"name": "...", "operations": [...]}')
    name = body.get("name").strip() if isinstance(body.get("name"), str) else ""
    if not PRESET_NAME.match(name):
        raise Refused(RefusalCode.INVALID_PRESET_NAME, "name a preset with 1 to 60 letters, digits, spaces or "
                                                       "- _ . , ( ) + & ' /, starting with a letter or digit",
                      [{"field": "name", "message": "not a valid preset name"}])
    if body.get("operations") is None:
        raise Refused(RefusalCode.MALFORMED_REQUEST, "give the preset's \"operations\" (a list)")
    operations = _resolve(None, body.get("operations"))
    if not operations:
        raise Refused(RefusalCode.INVALID_OPERATIONS, "a preset needs at least one operation",
                      [{"step": None, "index": None, "op": None, "field": None, "message": "no operations"}])
    store = _presets()
    existing = {p.name for p in store.list_presets(owner)}
    if name not in existing and len(existing) >= MAX_PRESETS_PER_CALLER:
        raise Refused(RefusalCode.TOO_MANY_PRESETS, f"at most {MAX_PRESETS_PER_CALLER} presets per caller; "
                                                    "delete one first")
    now = utcnow()
    saved = store.save_preset(SavedPreset(owner=owner, name=name, operations=operations, created_at=now,
                                          updated_at=now))
    response = jsonify(_view(saved))
    response.status_code = 200 if name in existing else 201
    return response


@editor.delete("/presets/<path:name>")
def delete_preset(name: str):
    if not _presets().delete_preset(_owner(), name):
        raise Refused(RefusalCode.PRESET_NOT_FOUND, f"no saved preset named {name[:64]!r}")
    return "", 204
