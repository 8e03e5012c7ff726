"""The OpenAPI 3.1 document of the image-handler's API, served at GET /api/v1/openapi.json.

Schemas come from pydantic models: the operations list is the engine's own validation model
(imageflow.engine.schema), the lifecycle bodies are the models their routes validate with,
and the answers are described by the models below. ``ROUTES`` lists every route; a test
checks it against Flask's url_map, so a route added without its entry here fails CI.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from imageflow.domain import JOB_STATUSES, TERMINAL_IMAGE_STATUSES
from imageflow.engine.schema import MAX_OPERATIONS, PRESETS, Operation

REF = "#/components/schemas/{model}"
# validated by the engine (resolve_operations, for its error messages); documented as its schema
# (a marker, swapped for the $ref once pydantic is done: it refuses refs it did not make)
_OPERATIONS_MARK = "x-imageflow-operations"
OperationsRef = Annotated[list[dict] | None, WithJsonSchema({_OPERATIONS_MARK: True})]
JobStatus = Literal[JOB_STATUSES]  # type: ignore[valid-type]
ImageStatus = Literal[("queued", *TERMINAL_IMAGE_STATUSES)]  # type: ignore[valid-type]


# -- request bodies ------------------------------------------------------------------------
class JobOptions(BaseModel):
    """What every way of creating a job shares (multipart form fields or JSON keys)."""

    operations: OperationsRef = Field(None, description="the steps, applied in order (or a preset)")
    preset: str | None = Field(None, description=f"a named list of operations: {', '.join(sorted(PRESETS))}")
    email: str | None = Field(None, description="mailed when the job is done")
    webhook_url: str | None = Field(None, description="job.completed is POSTed there, signed")
    webhook_secret: str | None = Field(None, min_length=16, max_length=200)
    name: str | None = Field(None, max_length=200)


class MultipartJob(JobOptions):
    estimate: Literal["true", "false"] | None = Field(None, description="true: answer 200 with an estimate, "
                                                                         "create nothing")
    files: list[bytes] = Field(default_factory=list,
                               description="the images (repeat the field); none with open=true",
                               json_schema_extra={"items": {"type": "string", "contentMediaType":
                                                            "application/octet-stream"}})
    csv: bytes | None = Field(None, description="instead of files: a CSV of image URLs (url column)")
    overlay: list[bytes] | None = Field(None, description="the logo files the overlay operations name by file name "
                                                          "(repeat the field); with files, a csv or open=true",
                                        json_schema_extra={"items": {"type": "string", "contentMediaType":
                                                                     "application/octet-stream"}})
    open: Literal["true", "false"] | None = Field(None, description="true: open a job (201) with no files yet, "
                                                                     "only its options and overlay files; its files "
                                                                     "follow on /jobs/<job_id>/files")


class UrlJob(JobOptions):
    urls: list[Any] = Field(description="image URLs, or objects {url, filename?, ...columns kept for the report}")


class RerunRequest(BaseModel):
    """POST /jobs/<id>/rerun: without operations or a preset, the parent's operations run again."""

    model_config = ConfigDict(extra="allow")  # email, webhook_url, name: as when creating a job
    operations: OperationsRef = None
    preset: str | None = None
    only: Literal["all", "failed", "succeeded"] = Field("all", description="which of the parent's images")


class RenameRequest(BaseModel):
    name: str | None = Field(max_length=200)


# -- answers -------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(description="stable name to branch on, e.g. job_not_found, invalid_operations")
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class Links(BaseModel):
    self: str
    results_page: str
    archive: str


class OutputView(BaseModel):
    variant: str
    url: str | None
    width: int | None
    height: int | None
    bytes: int | None
    content_type: str | None


class ImageView(BaseModel):
    image_id: str
    filename: str
    status: ImageStatus
    error: str | None
    error_code: str | None = Field(description="why it failed, for programs (ImageError codes, missing_input, "
                                               "worker_crashed, fetch_failed)")
    width: int | None
    height: int | None
    bytes: int | None
    content_type: str | None
    input_bytes: int | None
    output_bytes: int | None
    saved_percent: float | None
    duplicate_of: str | None = Field(description="<job_id>/<image_id> whose output was reused")
    input_content_type: str | None
    input_url: str | None
    output_url: str | None
    source_url: str | None
    meta: dict
    outputs: list[OutputView]
    input_preview_url: str | None = Field(description="small WebP preview of the original")
    output_preview_url: str | None = Field(description="small WebP preview of the output")
    blurhash: str | None = Field(description="placeholder of the output")
    dominant_color: str | None = Field(description="#rrggbb")
    choices: dict = Field(description="what the engine chose for this image (docs/engine.md)")


class JobView(BaseModel):
    job_id: str
    status: JobStatus
    name: str | None
    created_at: str
    updated_at: str
    completed_at: str | None
    closed_at: str | None = Field(None, description="open jobs: when the job stopped taking files")
    expires_at: str | None = Field(description="created_at + JOB_RETENTION_DAYS; after it the job answers 410")
    total: int
    succeeded: int
    failed: int
    skipped: int = Field(description="images a cancel kept from starting")
    pending: int
    run: int = Field(description="0, then 1, 2... after each retry")
    cancel_requested_at: str | None
    parent_job_id: str | None
    child_job_ids: list[str]
    bytes_in: int
    bytes_out: int
    saved_percent: float | None
    operations: list[dict]
    preset: str | None
    email: str | None
    webhook_url: str | None
    webhook_status: str | None
    webhook_attempts: list[dict]
    links: Links
    images: list[ImageView] | None = None


class RetryAnswer(JobView):
    retried: int


class CreatedImage(BaseModel):
    image_id: str
    filename: str
    source_url: str | None = None


class JobCreated(BaseModel):
    job_id: str
    status: JobStatus
    total: int
    images: list[CreatedImage]
    rejected: list[dict] = []
    links: Links
    webhook_secret: str | None = Field(None, description="shown once, when a webhook_url was given")


class EstimatedImage(BaseModel):
    filename: str
    format: str
    width: int
    height: int
    input_bytes: int
    predicted_output_bytes: int | None
    cpu_seconds: float | None


class EstimateTotals(BaseModel):
    images: int
    refused: int
    bytes_in: int
    predicted_bytes_out: int | None
    predicted_saved_percent: float | None
    cpu_seconds: float | None
    wall_seconds: float | None = Field(description="at PROCESSOR_CONCURRENCY slots, after the images queued ahead")


class EstimateAnswer(BaseModel):
    """POST /api/v1/jobs with estimate=true: what the job would do; nothing is created."""

    estimate: Literal[True]
    accepted: bool = Field(description="false: the job would be refused as a whole (see reasons)")
    reasons: list[ErrorDetail]
    images: list[EstimatedImage]
    refused: list[dict]
    totals: EstimateTotals
    processor_slots: int
    images_queued_ahead: int
    samples: list[dict] = Field(description="the images measured: filename, width, height, exponent, outputs, "
                                            "rendered_outputs and extrapolated (what was predicted rather than "
                                            "rendered, or null); or filename and error")


class RerunCreated(JobCreated):
    parent_job_id: str


class JobList(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None
    links: dict


class OperationsInfo(BaseModel):
    schema_: dict = Field(alias="schema")
    presets: dict
    api_keys_required: bool = Field(description="true: every call but this one needs an API key")
    limits: dict


# -- the routes ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    path: str                       # Flask's rule (``<job_id>``)
    method: str
    summary: str
    answer: tuple[int, type[BaseModel] | str | None] = (200, None)  # status, model / media type
    body: dict[str, type[BaseModel]] = field(default_factory=dict)  # media type -> model
    errors: tuple[int, ...] = ()
    public: bool = False            # no API key needed
    also: tuple[tuple[int, type[BaseModel]], ...] = ()  # other success answers


JOB = "/api/v1/jobs/<job_id>"
ROUTES = [
    Route("/api/v1/operations", "get", "The operations' JSON Schema, the presets and the limits",
          (200, OperationsInfo), public=True),
    Route("/api/v1/openapi.json", "get", "This document", (200, "application/json"), public=True),
    Route("/api/v1/jobs", "post", "Create a job (uploads, a CSV of URLs or a JSON list of URLs)", (202, JobCreated),
          {"multipart/form-data": MultipartJob, "application/json": UrlJob}, (400, 413, 415, 422, 429, 503),
          also=((200, EstimateAnswer),)),
    Route("/api/v1/jobs", "get", "The caller's jobs, newest first (?status, ?limit, ?cursor)", (200, JobList), {},
          (400,)),
    Route(JOB, "get", "A job: status, counts, savings and every image", (200, JobView), {}, (404, 410)),
    Route(JOB, "patch", "Rename a job", (200, JobView), {"application/json": RenameRequest}, (400, 404, 410)),
    Route(JOB, "delete", "Delete a finished job and its files", (204, None), {}, (404, 409, 410)),
    Route(f"{JOB}/images/<image_id>/input", "get", "An original's bytes (or a redirect to a signed URL)",
          (200, "application/octet-stream"), {}, (404, 410)),
    Route(f"{JOB}/images/<image_id>/output", "get", "An output's bytes (?variant=)",
          (200, "application/octet-stream"), {}, (404, 410)),
    Route(f"{JOB}/archive.zip", "get", "Every output in one zip", (200, "application/zip"), {}, (404, 410)),
    Route(f"{JOB}/report.csv", "get", "One CSV row per image, with sizes and savings", (200, "text/csv"), {},
          (404, 410)),
    Route(f"{JOB}/cancel", "post", "Cancel: images not started are skipped, those in flight finish",
          (202, JobView), {}, (404, 409, 410)),
    Route(f"{JOB}/retry", "post", "Queue the failed (and dead-lettered, and skipped) images again",
          (202, RetryAnswer), {}, (404, 409, 410, 429)),
    Route(f"{JOB}/rerun", "post", "A new job over this job's stored originals, with other operations",
          (202, RerunCreated), {"application/json": RerunRequest}, (400, 404, 409, 410, 422, 429)),
    Route(f"{JOB}/images", "get", "The job's images, a page at a time (?status, ?limit, ?cursor)",
          (200, "application/json"), {}, (400, 404, 410)),
    Route(f"{JOB}/files", "post", "Add files (or URLs) to an open job", (202, "application/json"),
          {}, (400, 404, 409, 410, 413, 415, 422, 429)),
    Route(f"{JOB}/close", "post", "Close an open job: it takes no more files and finishes when they are done",
          (200, JobView), {}, (404, 410, 503)),
    Route(f"{JOB}/uploads/<image_id>", "put", "Upload one file of an open job to its signed link (no API key)",
          (204, None), {}, (400, 403, 404, 409, 413, 415), public=True),
    Route(f"{JOB}/images/<image_id>/<any(input, output):which>/preview", "get",
          "The small WebP preview of the original (input) or the output", (200, "image/webp"), {}, (404, 410)),
    Route("/api/v1/operations/validate", "post", "Check operations (or a preset) before any upload; creates nothing",
          (200, "application/json"), {}, (400, 422), public=True),
    Route("/api/v1/presets", "get", "The caller's saved presets, by name", (200, "application/json")),
    Route("/api/v1/presets", "post", "Save a preset (201 new, 200 replaced)", (201, "application/json"), {},
          (400, 409, 422), also=()),
    Route("/api/v1/presets/<name>", "delete", "Delete a saved preset", (204, None), {}, (404,)),
    Route("/api/v1/stats", "get", "The caller's totals", (200, "application/json")),
    Route("/healthz", "get", "Alive", (200, "application/json"), public=True),
    Route("/readyz", "get", "Backends reachable (503 if not)", (200, "application/json"), (), (503,), public=True),
    Route("/metrics", "get", "Prometheus metrics", (200, "text/plain"), public=True),
]

REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No content", 400: "Malformed request", 401: "API key missing or wrong",
           404: "No such job or image", 409: "Not possible in the job's current state", 410: "The job has expired",
           403: "Link expired or signature wrong", 413: "Too large", 415: "Not an image / wrong media type", 422: "Invalid operations",
           429: "Over quota or rate limit", 503: "A backend is unavailable"}


def openapi_path(rule: str) -> str:
    """Flask's ``/jobs/<job_id>`` (or ``<path:name>``) as OpenAPI's ``/jobs/{job_id}``."""
    import re
    return re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>", r"{\1}", rule)


def _link_operations(node):
    if isinstance(node, dict):
        if node.pop(_OPERATIONS_MARK, False):
            node["anyOf"] = [{"$ref": REF.format(model="Operations")}, {"type": "null"}]
        for value in node.values():
            _link_operations(value)
    elif isinstance(node, list):
        for value in node:
            _link_operations(value)
    return node


def _schema(model: type[BaseModel], components: dict) -> dict:
    schema = _link_operations(model.model_json_schema(ref_template=REF, by_alias=True))
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


def _operations_schema(components: dict) -> None:
    from pydantic import TypeAdapter
    schema = TypeAdapter(Annotated[list[Operation], Field(max_length=MAX_OPERATIONS)]).json_schema(ref_template=REF)
    components.update(schema.pop("$defs", {}))
    components["Operations"] = {**schema, "title": "ImageFlow operations"}


def document(version: str = "1", keys_required: bool = False) -> dict:
    components: dict[str, Any] = {}
    _operations_schema(components)
    error = _schema(ErrorBody, components)
    paths: dict[str, dict] = {}
    for route in ROUTES:
        path = openapi_path(route.path)
        status, answer = route.answer
        if isinstance(answer, str):
            content = {answer: {"schema": {}}}
        elif answer is None:
            content = None
        else:
            content = {"application/json": {"schema": _schema(answer, components)}}
        responses = {str(status): {"description": REASONS[status], **({"content": content} if content else {})}}
        for other, model in route.also:
            responses[str(other)] = {"description": model.__doc__.strip().splitlines()[0],
                                     "content": {"application/json": {"schema": _schema(model, components)}}}
        codes = list(route.errors) + ([] if route.public else [401])
        for code in codes:
            responses[str(code)] = {"description": REASONS[code], "content": {"application/json": {"schema": error}}}
        operation: dict[str, Any] = {"summary": route.summary, "operationId": f"{route.method}_{path}",
                                     "responses": responses}
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in _path_names(path)]
        if params:
            operation["parameters"] = params
        if route.body:
            operation["requestBody"] = {"required": True, "content": {
                media: {"schema": _schema(model, components)} for media, model in route.body.items()}}
        if route.public:
            operation["security"] = []
        paths.setdefault(path, {})[route.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "ImageFlow API", "version": version,
                 "description": "Batch image processing: upload, process, download. Errors are "
                                "{\"error\": {\"code\", \"message\", \"details\"}}."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "an API key (when the server sets API_KEYS)"}}},
        "security": [{"apiKey": []}] if keys_required else [],
    }


def _path_names(path: str) -> list[str]:
    import re
    return re.findall(r"{([a-z_]+)}", path)
