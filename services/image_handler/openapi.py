"""The OpenAPI 3.1 document of the image-handler's API, served at GET /api/v1/openapi.json.

Schemas come from pydantic models: the operations list is the engine's own validation model
(imageflow.engine.schema), the lifecycle bodies are the models their routes validate with,
and the answers are described by the models below. ``ROUTES`` lists every route; a test
checks it against Flask's url_map, so a route added without its entry here fails CI.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, WithJsonSchema

from imageflow import domain
from imageflow.domain import JOB_STATUSES, TERMINAL_IMAGE_STATUSES
from imageflow.engine.schema import MAX_OPERATIONS, PRESETS, Operation

REF = "#/components/schemas/{model}"
# validated by the engine (resolve_operations, for its error messages); documented as its schema
# (a marker, swapped for the $ref once pydantic is done: it refuses refs it did not make)
_OPERATIONS_MARK = "x-imageflow-operations"
OperationsRef = Annotated[list[dict] | None, WithJsonSchema({_OPERATIONS_MARK: True})]
JobStatus = Literal[JOB_STATUSES]  # type: ignore[valid-type]
ImageStatus = Literal[("queued", *TERMINAL_IMAGE_STATUSES)]  # type: ignore[valid-type]
# why an image failed: domain.ErrorCode, published as an inline enum of its values (docs/api.md says what each means)
ErrorCode = Literal[tuple(code.value for code in domain.ErrorCode)]  # type: ignore[valid-type]


# -- request bodies ------------------------------------------------------------------------
class Body(BaseModel):
    """A request body: a field it does not name is refused (400 unknown_field, services.image_handler.bodies)."""

    model_config = ConfigDict(extra="forbid")


class JobOptions(Body):
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
    urls: list[Any] = Field(description="image URLs, or objects {url, name?, ...columns kept for the report}")
    estimate: bool | None = Field(None, description="true is refused (400 estimate_needs_files): an estimate "
                                                    "is made from uploaded files")


class OpenJob(JobOptions):
    open: Literal[True] = Field(description="open a job (201) with no files yet; they follow on "
                                            "/jobs/<job_id>/files")


class JsonJob(RootModel[UrlJob | OpenJob]):
    """POST /jobs as JSON: a list of image URLs, or an open job."""


class RerunRequest(JobOptions):
    """POST /jobs/<id>/rerun: without operations or a preset, the parent's operations run again."""

    only: Literal["all", "failed", "succeeded"] = Field("all", description="which of the parent's images")


class RenameRequest(Body):
    name: str | None = Field(max_length=200)


class ValidateRequest(Body):
    operations: OperationsRef = None
    preset: str | None = None


class PresetRequest(Body):
    name: str = Field(description="1-60 letters, digits, spaces or - _ . , ( ) + & ' /")
    operations: OperationsRef


class MultipartFiles(Body):
    files: list[bytes] = Field(description="the images (repeat the field)",
                               json_schema_extra={"items": {"type": "string", "contentMediaType":
                                                            "application/octet-stream"}})


class DirectUploadFile(Body):
    filename: str
    bytes: int
    content_type: str | None = None


class DirectUploadRequest(Body):
    """Ask for upload links instead of sending the bytes here."""

    files: list[DirectUploadFile] = Field(min_length=1, max_length=1000)


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
    report: str
    images: str
    files: str = Field(description="open jobs: where their files go")
    close: str = Field(description="open jobs: close the job")


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
    error_code: ErrorCode | None = Field(description="why it failed, for programs (docs/api.md lists each code "
                                                     "and its meaning); error says it for people")
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


WebhookStatus = Literal["pending", "delivered", "failed", "superseded"]


class WebhookAttempt(BaseModel):
    run: int = Field(description="the run the attempt delivers (0, then 1, 2... after each retry)")
    attempt: int = Field(description="1, 2... within its run")
    at: str
    status_code: int | None = Field(description="the receiver's answer; null when there was none")
    error: str | None = Field(description="why the attempt failed; null when it delivered")
    duration_ms: int


class WebhookRun(BaseModel):
    run: int
    status: WebhookStatus = Field(description="superseded: a retry began before the run's job.completed "
                                              "was published, so it is never sent (see reason)")
    reason: str | None
    attempts: int


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
    cost: float = Field(description="what the job's images weigh against QUOTA_ACTIVE_COST, in output megapixels "
                                    "(input megapixels x outputs, an output with quality auto counting 15; "
                                    "12 megapixels for a size not known yet)")
    unfinished_cost: float = Field(description="the share of cost still to render (cost x unfinished / total): "
                                               "what the job holds of its key's QUOTA_ACTIVE_COST now")
    operations: list[dict]
    preset: str | None
    email: str | None
    webhook_url: str | None
    webhook_status: WebhookStatus | None = Field(description="the current run's webhook; null without a webhook")
    webhook_attempts: list[WebhookAttempt] = Field(description="every run's attempts, oldest first")
    webhook_runs: list[WebhookRun] = Field(description="each run's webhook: a retry does not stop the earlier "
                                                       "run's delivery")
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


class OpenedJob(BaseModel):
    """An open job: its files follow on links.files, links.close ends it"""

    job_id: str
    status: JobStatus
    total: int
    links: Links
    webhook_secret: str | None = Field(None, description="shown once, when a webhook_url was given")


class FilesAdded(BaseModel):
    job_id: str
    status: JobStatus
    total: int
    images: list[CreatedImage]
    rejected: list[dict]


class UploadTarget(BaseModel):
    image_id: str
    filename: str
    url: str
    method: str
    headers: dict[str, str]
    expires_at: str


class DirectUploads(BaseModel):
    job_id: str
    uploads: list[UploadTarget]
    rejected: list[dict]


class FilesAnswer(RootModel[FilesAdded | DirectUploads]):
    """The files taken (multipart), or where to upload each one (JSON)."""


class UploadStored(BaseModel):
    image_id: str
    filename: str
    bytes: int


class ImagePage(BaseModel):
    job_id: str
    images: list[ImageView]
    links: dict


class ValidatedOperations(BaseModel):
    operations: list[dict] = Field(description="resolved: defaults filled in")


class PresetView(BaseModel):
    """The saved preset"""

    name: str
    operations: list[dict]
    created_at: str
    updated_at: str


class PresetList(BaseModel):
    presets: list[PresetView]


class Health(BaseModel):
    """A backend is unreachable (which one: checks)"""

    model_config = ConfigDict(extra="allow")
    service: str
    status: str


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
    answer: tuple[int, Any] = (200, None)  # status, model / media type / None
    body: dict[str, type[BaseModel]] = field(default_factory=dict)  # media type -> model
    errors: tuple[int, ...] = ()    # answered with the ErrorBody
    public: bool = False            # no API key needed
    also: tuple[tuple[int, Any], ...] = ()  # other answers, as ``answer``


JOB = "/api/v1/jobs/<job_id>"
IMAGE = f"{JOB}/images/<image_id>"
REDIRECT = (302, None)   # GCS: a redirect to a signed URL instead of the bytes
IMAGE_BYTES = ("image/*", "application/octet-stream")  # the image's own type, when it is known
NOT_MODIFIED = (304, None)   # If-None-Match matched the ETag (the light polling of a job)
RESUME_INCOMPLETE = (308, None)  # a resumable upload's chunk kept; Range: bytes=0-<last> (Cloud Storage's protocol)
ROUTES = [
    Route("/api/v1/operations", "get", "The operations' JSON Schema, the presets and the limits",
          (200, OperationsInfo), public=True),
    Route("/api/v1/openapi.json", "get", "This document", (200, "application/json"), public=True),
    Route("/api/v1/jobs", "post", "Create a job (uploads, a CSV of URLs or a JSON list of URLs)", (202, JobCreated),
          {"multipart/form-data": MultipartJob, "application/json": JsonJob}, (400, 413, 415, 422, 429, 503),
          also=((200, EstimateAnswer), (201, OpenedJob))),
    Route("/api/v1/jobs", "get", "The caller's jobs, newest first (?status, ?limit, ?cursor)", (200, JobList), {},
          (400,)),
    Route(JOB, "get", "A job: status, counts, savings and every image", (200, JobView), {}, (404, 410),
          also=(NOT_MODIFIED,)),
    Route(JOB, "patch", "Rename a job", (200, JobView), {"application/json": RenameRequest}, (400, 404, 410)),
    Route(JOB, "delete", "Delete a finished job and its files", (204, None), {}, (404, 409, 410)),
    Route(f"{IMAGE}/input", "get", "An original's bytes (or a redirect to a signed URL)", (200, IMAGE_BYTES), {},
          (403, 404, 410), also=(REDIRECT,)),
    Route(f"{IMAGE}/output", "get", "An output's bytes (?variant=)", (200, IMAGE_BYTES), {}, (403, 404, 410),
          also=(REDIRECT,)),
    Route(f"{JOB}/archive.zip", "get", "Every output in one zip", (200, "application/zip"), {}, (403, 404, 410)),
    Route(f"{JOB}/report.csv", "get", "One CSV row per image, with sizes and savings", (200, "text/csv"), {},
          (404, 410)),
    Route(f"{JOB}/cancel", "post", "Cancel: images not started are skipped, those in flight finish",
          (202, JobView), {}, (404, 409, 410)),
    Route(f"{JOB}/retry", "post", "Queue the failed (and dead-lettered, and skipped) images again",
          (202, RetryAnswer), {}, (404, 409, 410, 429)),
    Route(f"{JOB}/rerun", "post", "A new job over this job's stored originals, with other operations",
          (202, RerunCreated), {"application/json": RerunRequest}, (400, 404, 409, 410, 422, 429, 503)),
    Route(f"{JOB}/images", "get", "The job's images, a page at a time (?status, ?limit, ?cursor)",
          (200, ImagePage), {}, (400, 404, 410), also=(NOT_MODIFIED,)),
    Route(f"{JOB}/files", "post", "Add files to an open job (multipart), or ask for upload links for them (JSON)",
          (200, FilesAnswer), {"multipart/form-data": MultipartFiles, "application/json": DirectUploadRequest},
          (400, 404, 409, 410, 413, 415, 422, 429, 503)),
    Route(f"{JOB}/close", "post", "Close an open job: it takes no more files and finishes when they are done",
          (200, JobView), {}, (404, 410, 503)),
    Route(f"{JOB}/uploads/<image_id>", "put",
          "Upload one file of an open job to its signed link (no API key): whole, or in Content-Range chunks "
          "(308 with Range: the bytes kept so far)",
          (200, UploadStored), {}, (400, 403, 404, 409, 413, 415, 503), public=True, also=(RESUME_INCOMPLETE,)),
    Route(f"{IMAGE}/<any(input, output):which>/preview", "get",
          "The small WebP preview of the original (input) or the output", (200, "image/webp"), {}, (403, 404, 410),
          also=(REDIRECT,)),
    Route("/api/v1/operations/validate", "post", "Check operations (or a preset) before any upload; creates nothing",
          (200, ValidatedOperations), {"application/json": ValidateRequest}, (400, 422), public=True),
    Route("/api/v1/presets", "get", "The caller's saved presets, by name", (200, PresetList)),
    Route("/api/v1/presets", "post", "Save a preset (201 new, 200 replaced)", (201, PresetView),
          {"application/json": PresetRequest}, (400, 409, 422), also=((200, PresetView),)),
    Route("/api/v1/presets/<path:name>", "delete", "Delete a saved preset", (204, None), {}, (404,)),
    Route("/api/v1/stats", "get", "The caller's totals", (200, "application/json")),
    Route("/healthz", "get", "Alive", (200, Health), public=True),
    Route("/readyz", "get", "Backends reachable (503 if not)", (200, Health), public=True, also=((503, Health),)),
    Route("/metrics", "get", "Prometheus metrics", (200, "text/plain"), public=True),
]
PICTURES = ("/input", "/output", "/preview")  # GETs the rate limit leaves alone (app._register_rate_limit)

REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No content", 302: "Redirect to a signed URL",
           304: "Not modified since the ETag given in If-None-Match",
           308: "Resume incomplete: the chunk was kept; Range gives the bytes kept so far (none: nothing yet)",
           400: "Malformed request: invalid_json, unknown_field, malformed_request...",
           401: "API key missing or wrong", 403: "Link expired or signature wrong",
           404: "No such job or image", 408: "The request's headers or body arrived too slowly",
           409: "Not possible in the job's current state", 410: "The job has expired", 413: "Too large",
           415: "Not an image / wrong media type / a Content-Encoding", 422: "Invalid operations",
           429: "Over quota or rate limit", 503: "A backend is unavailable"}


def _content(answer, components: dict) -> dict | None:
    if isinstance(answer, str):
        return {answer: {"schema": {}}}
    if isinstance(answer, tuple):  # one of several media types
        return {media: {"schema": {}} for media in answer}
    if answer is None:
        return None
    return {"application/json": {"schema": _schema(answer, components)}}


def _errors(route: Route) -> list[int]:
    """The route's own errors, and those any route of its kind can answer: a body's (400 unreadable,
    413 past MAX_JSON_BYTES/MAX_REQUEST_BYTES, 415 a Content-Encoding, services.image_handler.body_limits),
    401 without a key, 429 past the rate limit (on /api/, but for the pictures), and 408 on any route
    to a client whose headers or body trickle in too slowly (services.image_handler.server)."""
    codes = set(route.errors) | {408}
    if route.body:
        codes.add(400)
    if route.method in ("post", "put", "patch"):
        codes |= {413, 415}
    if not route.public:
        codes.add(401)
    if route.path.startswith("/api/") and not (route.method == "get" and route.path.endswith(PICTURES)):
        codes.add(429)
    return sorted(codes)


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
        responses = {}
        for status, answer in (route.answer, *route.also):
            content = _content(answer, components)
            doc = answer.__doc__ if isinstance(answer, type) and (status, answer) in route.also else None
            description = doc.strip().splitlines()[0] if doc else REASONS[status]
            responses[str(status)] = {"description": description, **({"content": content} if content else {})}
        for code in _errors(route):
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
