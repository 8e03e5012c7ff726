"""The one schema of image operations: validation, normalisation, presets, JSON Schema.

An operations list is JSON: ``[{"op": NAME, ...params}, ...]``, applied in order
(ARCHITECTURE.md names the core operations; more extend the list without renaming it).
Everything that accepts operations (the API, the processor, the frontend through the
exported JSON Schema) goes through :func:`resolve_operations`, so a list is checked once,
with errors that name the item and the field, before anything is stored.

Pixel operations (resize, crop, ...) run in list order. *Setting* operations
(``auto_orient``, ``metadata``, ``frames``, ``format``) configure the whole render and may
appear anywhere; when one appears twice the later one wins, so explicit operations
override a preset's. ``variants`` must come after every pixel operation.
"""
from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, Union

from PIL import ImageColor
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError,
                      model_validator)

from ..domain import display_name

MAX_OPERATIONS = 32
MAX_DIMENSION = 16384          # the largest side any operation may ask for (WebP's own limit is 16383)

GRAVITIES = ("center", "north", "south", "east", "west",
             "northeast", "northwest", "southeast", "southwest")
FORMATS = ("jpeg", "png", "webp", "avif", "gif", "tiff", "jxl", "heic")
LOSSY_FORMATS = ("jpeg", "webp", "avif", "jxl", "heic")


class OperationsError(ValueError):
    """An operations list (or preset name) is invalid.

    ``message`` is one sentence naming the first problem; ``details`` lists every problem
    as ``{"index", "op", "field", "message"}`` (``index``/``op``/``field`` are ``None``
    where they don't apply)."""

    def __init__(self, message: str, details: list[dict] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []


def _color(value: str) -> str:
    """Accept CSS-like colours (``#fff``, ``#ffffff80``, ``red``, ``rgb(1,2,3)``,
    ``transparent``); normalise to ``#rrggbb`` or ``#rrggbbaa``."""
    text = value.strip().lower()
    if text == "transparent":
        return "#00000000"
    try:
        rgba = ImageColor.getrgb(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a colour (use #rrggbb, #rrggbbaa or a name like 'white')") from None
    if len(rgba) == 3 or rgba[3] == 255:
        return "#{:02x}{:02x}{:02x}".format(*rgba[:3])
    return "#{:02x}{:02x}{:02x}{:02x}".format(*rgba)


Color = Annotated[str, Field(max_length=40, description="CSS-like colour: #rgb, #rrggbb, #rrggbbaa, a name, "
                                                        "or 'transparent'"),
                  AfterValidator(_color)]
Dimension = Annotated[int, Field(gt=0, le=MAX_DIMENSION)]
Gravity = Literal["center", "north", "south", "east", "west", "northeast", "northwest", "southeast", "southwest"]
CoverGravity = Literal["center", "north", "south", "east", "west", "northeast", "northwest", "southeast",
                       "southwest", "smart", "face"]
FormatName = Literal["jpeg", "png", "webp", "avif", "gif", "tiff", "jxl", "heic"]

_ASPECT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:[:/x]\s*(\d+(?:\.\d+)?))?\s*$")


def parse_aspect(value: str) -> float:
    """``"16:9"``, ``"4/3"``, ``"1.5"`` -> width / height."""
    match = _ASPECT_RE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not an aspect ratio (use W:H, like 16:9)")
    width = float(match.group(1))
    height = float(match.group(2) or 1)
    if width <= 0 or height <= 0:
        raise ValueError(f"{value!r} is not an aspect ratio (both sides must be > 0)")
    ratio = width / height
    if not 0.01 <= ratio <= 100:
        raise ValueError(f"aspect ratio {value!r} is out of range (1:100 to 100:1)")
    return ratio


def _aspect(value: str) -> str:
    parse_aspect(value)
    return value.strip()


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- pixel operations ---------------------------------------------------------------------

class Resize(_Op):
    """Scale into a box. ``contain`` fits inside keeping the aspect ratio, ``cover`` fills
    the box and crops the overflow (where ``gravity`` says; ``smart`` keeps the busiest
    part, ``face`` centres on the faces found, else acts as ``smart``), ``fill`` stretches. With one side only, the other follows the aspect ratio.
    Never enlarges unless ``upscale`` is true."""
    op: Literal["resize"]
    width: Dimension | None = None
    height: Dimension | None = None
    fit: Literal["contain", "cover", "fill"] = "contain"
    upscale: bool = False
    gravity: CoverGravity = "center"

    @model_validator(mode="after")
    def _one_side(self):
        if self.width is None and self.height is None:
            raise ValueError("give width, height or both")
        return self


class Crop(_Op):
    """Cut a box (``x``, ``y``, ``width``, ``height`` in pixels; a box running past the
    edge is clipped to the image), or the largest region of an ``aspect`` ratio placed by
    ``gravity`` (``smart`` keeps the busiest part, ``face`` centres on the faces found)."""
    op: Literal["crop"]
    x: Annotated[int, Field(ge=0, le=10 * MAX_DIMENSION)] = 0
    y: Annotated[int, Field(ge=0, le=10 * MAX_DIMENSION)] = 0
    width: Dimension | None = None
    height: Dimension | None = None
    aspect: Annotated[str, Field(max_length=20, description="W:H, like 16:9"), AfterValidator(_aspect)] | None = None
    gravity: CoverGravity = "center"

    @model_validator(mode="after")
    def _box_or_aspect(self):
        if self.aspect is not None:
            if self.width is not None or self.height is not None or self.x or self.y:
                raise ValueError("give either aspect or a box (x, y, width, height), not both")
        elif self.width is None or self.height is None:
            raise ValueError("give width and height (or aspect)")
        return self


class Rotate(_Op):
    """Rotate clockwise by any angle. Multiples of 90 are exact; other angles enlarge the
    canvas (``expand``) and fill the corners with ``background``."""
    op: Literal["rotate"]
    degrees: Annotated[float, Field(ge=-360, le=360)]
    background: Color = "#ffffff"
    expand: bool = True


class Flip(_Op):
    """Mirror horizontally (left-right) or vertically (top-bottom)."""
    op: Literal["flip"]
    direction: Literal["horizontal", "vertical"] = "horizontal"


class Grayscale(_Op):
    """Convert to shades of grey (alpha kept)."""
    op: Literal["grayscale"]


class Blur(_Op):
    """Gaussian blur; ``radius`` in pixels."""
    op: Literal["blur"]
    radius: Annotated[float, Field(gt=0, le=100)] = 2.0


class Sharpen(_Op):
    """Unsharp mask: ``radius`` in pixels, ``percent`` strength, ``threshold`` the least
    brightness change that gets sharpened."""
    op: Literal["sharpen"]
    radius: Annotated[float, Field(gt=0, le=50)] = 2.0
    percent: Annotated[int, Field(ge=1, le=500)] = 150
    threshold: Annotated[int, Field(ge=0, le=255)] = 3


class Brightness(_Op):
    """Scale brightness: 1 keeps it, 0 is black, 2 is twice as bright."""
    op: Literal["brightness"]
    factor: Annotated[float, Field(ge=0, le=10)]


class Contrast(_Op):
    """Scale contrast: 1 keeps it, 0 is flat grey."""
    op: Literal["contrast"]
    factor: Annotated[float, Field(ge=0, le=10)]


class Saturation(_Op):
    """Scale colour saturation: 1 keeps it, 0 is greyscale."""
    op: Literal["saturation"]
    factor: Annotated[float, Field(ge=0, le=10)]


class Pad(_Op):
    """Place the image on a canvas at least ``width`` x ``height`` (a missing side keeps
    the image's), filled with ``background``; ``gravity`` places the image."""
    op: Literal["pad"]
    width: Dimension | None = None
    height: Dimension | None = None
    background: Color = "#ffffff"
    gravity: Gravity = "center"

    @model_validator(mode="after")
    def _one_side(self):
        if self.width is None and self.height is None:
            raise ValueError("give width, height or both")
        return self


class Trim(_Op):
    """Remove uniform borders: every edge row and column whose pixels all lie within
    ``threshold`` (0-255, per channel) of the ``background`` colour; ``auto`` takes the
    top-left corner's colour. An image that is all border is left as it is."""
    op: Literal["trim"]
    threshold: Annotated[int, Field(ge=0, le=255)] = 10
    background: Union[Literal["auto"], Color] = "auto"


def _overlay_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("name the overlay: a file sent in the 'overlay' field, or an http(s) URL")
    if "://" in value and not value.lower().startswith(("http://", "https://")):
        raise ValueError("an overlay URL must be http or https")
    if "://" not in value and display_name(value) != value:
        # an uploaded file is known by its bare name (domain.display_name): 'logos/a.png' could never match
        raise ValueError(f"must be the file's bare name, without folders or control characters "
                         f"(uploaded, it is known as {display_name(value)!r})")
    return value


class Overlay(_Op):
    """Composite an image (a logo) at ``position``, or repeated over the picture (``tile``).
    ``image`` is the name of a file uploaded with the job in the ``overlay`` field, or an
    http(s) URL. Its transparency is kept. ``scale`` (0-1) sets its longer side as a
    fraction of the picture's shorter side (default: its own size, shrunk to fit);
    ``opacity`` from 0 to 1; ``margin`` in pixels from the edges, and between tiles
    (default 2% of the shorter side)."""
    op: Literal["overlay"]
    image: Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_overlay_name)]
    position: Gravity = "southeast"
    opacity: Annotated[float, Field(ge=0, le=1)] = 1.0
    scale: Annotated[float, Field(gt=0, le=1)] | None = None
    margin: Annotated[int, Field(ge=0, le=MAX_DIMENSION)] | None = None
    tile: bool = False


class Watermark(_Op):
    """Draw ``text`` at ``position``; ``size`` is the font height in pixels (default: 5%
    of the shorter side), ``opacity`` from 0 (invisible) to 1."""
    op: Literal["watermark"]
    text: Annotated[str, Field(min_length=1, max_length=200)]
    position: Gravity = "southeast"
    opacity: Annotated[float, Field(ge=0, le=1)] = 0.5
    size: Annotated[int, Field(ge=4, le=2000)] | None = None
    color: Color = "#ffffff"
    margin: Annotated[int, Field(ge=0, le=MAX_DIMENSION)] | None = None


# -- settings (apply to the whole render; the later one wins) ------------------------------

class AutoOrient(_Op):
    """Turn the image upright from its EXIF orientation (on by default)."""
    op: Literal["auto_orient"]
    enabled: bool = True


class Metadata(_Op):
    """Metadata in the output. By default EXIF, XMP and comments are stripped and colours
    are converted to sRGB from an embedded ICC profile (``icc: srgb``); ``icc: keep``
    keeps the profile as it is, ``icc: drop`` discards it unconverted. ``strip: false``
    keeps EXIF (with the orientation reset once applied). ``keep_copyright: true`` strips
    everything but the artist's name and the copyright notice. Each image reports what
    identifying metadata was removed (``choices.metadata_removed``: GPS position, camera
    serial number, owner's name, ...)."""
    op: Literal["metadata"]
    strip: bool = True
    keep_copyright: bool = False
    icc: Literal["srgb", "keep", "drop"] = "srgb"


class Page(_Op):
    """Which page of a PDF to render (1 is the first, the default); other inputs ignore it. A page
    past the document's end fails the image, naming how many pages it has."""
    op: Literal["page"]
    number: Annotated[int, Field(ge=1, le=100_000)] = 1


class Frames(_Op):
    """Animated input: keep ``all`` frames (up to ``max`` and the service's frame limit)
    when the output format animates (GIF, WebP, PNG, AVIF), or only the ``first``."""
    op: Literal["frames"]
    mode: Literal["all", "first"] = "all"
    max: Annotated[int, Field(ge=1, le=1000)] | None = None


def _quality(value):
    """One clear message for a bad quality (instead of one per member of the union)."""
    if value == "auto":
        return value
    number = value
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if not isinstance(number, int) or isinstance(number, bool):
        raise ValueError(f"must be an integer from 1 to 100, or 'auto' (got {value!r})")
    if not 1 <= number <= 100:
        raise ValueError("must be >= 1" if number < 1 else "must be <= 100")
    return number


class Format(_Op):
    """Output format. ``quality`` 1-100 for JPEG, WebP, AVIF, JPEG XL and HEIC (defaults
    85, 80, 60, 80, 50), or ``auto``: the lowest quality whose SSIMULACRA2 score reaches
    ``target``; ``progressive`` JPEG; ``lossless`` WebP/AVIF/JPEG XL/HEIC; ``max_bytes`` lowers the quality until
    the output fits; ``background`` flattens transparency for formats without alpha."""
    op: Literal["format"]
    format: FormatName
    quality: Annotated[Annotated[int, Field(ge=1, le=100)] | Literal["auto"],
                       BeforeValidator(_quality)] | None = None
    target: Annotated[float, Field(ge=1, le=100, description="SSIMULACRA2 score for quality 'auto' "
                                                             "(default 80; 90 is visually lossless)")] | None = None
    progressive: bool = False
    lossless: bool = False
    max_bytes: Annotated[int, Field(ge=512, le=1024 * 1024 * 1024)] | None = None
    background: Color = "#ffffff"

    @model_validator(mode="after")
    def _auto_quality(self):
        if self.quality == "auto":
            if self.format not in LOSSY_FORMATS:
                raise ValueError(f"quality 'auto' needs a format with a quality ({', '.join(LOSSY_FORMATS)})")
            if self.lossless:
                raise ValueError("quality 'auto' and lossless exclude each other")
        elif self.target is not None:
            raise ValueError("target is the aim of quality 'auto': give quality 'auto' with it")
        return self


class Variants(_Op):
    """Several outputs from one decode: every width (no upscaling) times every format,
    named ``w<width>-<format>`` (``<format>`` alone without widths)."""
    op: Literal["variants"]
    widths: Annotated[list[Dimension], Field(max_length=8)] = []
    formats: Annotated[list[FormatName], Field(max_length=4)] = []

    @model_validator(mode="after")
    def _something(self):
        if not self.widths and not self.formats:
            raise ValueError("give widths, formats or both")
        if len(set(self.widths)) != len(self.widths):
            raise ValueError("widths must not repeat")
        if len(set(self.formats)) != len(self.formats):
            raise ValueError("formats must not repeat")
        return self


OPERATION_MODELS: dict[str, type[_Op]] = {
    model.model_fields["op"].annotation.__args__[0]: model
    for model in (Resize, Crop, Rotate, Flip, Grayscale, Blur, Sharpen, Brightness, Contrast, Saturation,
                  Pad, Watermark, Trim, Overlay, AutoOrient, Metadata, Page, Frames, Format, Variants)
}
SETTING_OPS = frozenset({"auto_orient", "metadata", "page", "frames", "format"})

Operation = Annotated[Union[tuple(OPERATION_MODELS.values())], Field(discriminator="op")]


# -- presets --------------------------------------------------------------------------------

PRESETS: dict[str, list[dict]] = {}
_PRESET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def register_preset(name: str, operations: list[dict]) -> None:
    """Define (or replace) a named preset. The operations are validated now, so a bad
    preset fails at start-up, not on the first job that names it."""
    if not isinstance(name, str) or not _PRESET_NAME.match(name):
        raise OperationsError(f"preset name {name!r} must be 1-40 of a-z, 0-9, '_' or '-'",
                              [{"index": None, "op": None, "field": "preset", "message": "bad name"}])
    PRESETS[name] = resolve_operations(None, operations)


def load_presets(source: str | dict) -> list[str]:
    """Register every preset of a JSON object ``{"name": [ops...]}`` given as a dict, a
    JSON string, or the path of a JSON file. Returns the names registered."""
    if isinstance(source, str):
        text = source
        if not source.lstrip().startswith("{"):
            with open(source, encoding="utf-8") as handle:
                text = handle.read()
        try:
            source = json.loads(text)
        except json.JSONDecodeError as exc:
            raise OperationsError(f"presets are not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(source, dict):
        raise OperationsError("presets must be a JSON object of name -> operations list")
    for name, ops in source.items():
        register_preset(name, ops)
    return list(source)


# -- validation -----------------------------------------------------------------------------

def _field_name(loc: tuple) -> str | None:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


def _validate_item(index: int, item: Any) -> tuple[_Op | None, list[dict]]:
    if not isinstance(item, dict):
        return None, [{"index": index, "op": None, "field": None,
                       "message": f"must be an object like {{\"op\": \"resize\", ...}}, got {type(item).__name__}"}]
    name = item.get("op")
    model = OPERATION_MODELS.get(name) if isinstance(name, str) else None
    if model is None:
        known = ", ".join(OPERATION_MODELS)
        message = "missing \"op\"" if name is None else f"unknown op {name!r}"
        return None, [{"index": index, "op": name if isinstance(name, str) else None, "field": "op",
                       "message": f"{message} (known: {known})"}]
    try:
        return model.model_validate(item), []
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            problems.append({"index": index, "op": name, "field": _field_name(error["loc"]),
                             "message": _message(error)})
        return None, problems


_COMPARISONS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _message(error: dict) -> str:
    """pydantic's message, phrased as the rest of ours (\"width must be > 0\")."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _COMPARISONS:
        return f"must be {_COMPARISONS[kind]} {next(iter(ctx.values()))}"
    if kind == "extra_forbidden":
        return "is not a parameter of this op"
    if kind == "missing":
        return "is required"
    return error["msg"].removeprefix("Value error, ").replace("Input should be", "must be")


def _sentence(problem: dict) -> str:
    where = "operations" if problem["index"] is None else f"operations[{problem['index']}]"
    if problem["op"]:
        where += f" ({problem['op']})"
    field = f"{problem['field']} " if problem["field"] and problem["field"] != "op" else ""
    return f"{where}: {field}{problem['message']}"


def parse_operations(operations: Any) -> list[_Op]:
    """Validate a raw list (already decoded from JSON) into operation models."""
    if not isinstance(operations, list):
        raise OperationsError(f"operations must be a JSON list, got {type(operations).__name__}",
                              [{"index": None, "op": None, "field": None, "message": "not a list"}])
    if len(operations) > MAX_OPERATIONS:
        raise OperationsError(f"operations: at most {MAX_OPERATIONS} operations, got {len(operations)}",
                              [{"index": None, "op": None, "field": None, "message": "too many operations"}])
    models, problems = [], []
    for index, item in enumerate(operations):
        model, errors = _validate_item(index, item)
        models.append(model)
        problems.extend(errors)
    if not problems:
        problems = _check_order(models)
    if problems:
        raise OperationsError(_sentence(problems[0]), problems)
    return models


def _check_order(models: list[_Op]) -> list[dict]:
    """``variants`` fans out the outputs, so it must be the last pixel operation, once."""
    seen = None
    for index, model in enumerate(models):
        if seen is not None:
            if model.op == "variants":
                return [{"index": index, "op": "variants", "field": None,
                         "message": f"only one variants operation is allowed (first at operations[{seen}])"}]
            if model.op not in SETTING_OPS:
                return [{"index": index, "op": model.op, "field": None,
                         "message": f"must come before variants (operations[{seen}])"}]
        elif model.op == "variants":
            seen = index
    return []


def _decode(operations: Any) -> Any:
    if operations is None:
        return []
    if isinstance(operations, (bytes, bytearray)):
        operations = operations.decode("utf-8", "replace")
    if isinstance(operations, str):
        if not operations.strip():
            return []
        try:
            return json.loads(operations)
        except json.JSONDecodeError as exc:
            raise OperationsError(f"operations are not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                                  [{"index": None, "op": None, "field": None, "message": exc.msg}]) from None
    if isinstance(operations, tuple):
        return list(operations)
    return operations


def resolve_operations(preset: str | None, operations) -> list[dict]:
    """Validate and normalise: ``operations`` may be None, a JSON string, or a list of
    dicts; ``preset`` a name. Both given -> the preset's operations, then the explicit
    ones. Neither -> []. Unknown preset / invalid op -> :class:`OperationsError`.

    Returns JSON-serialisable dicts with defaults filled in (unset optional fields are
    left out); resolving the result again returns it unchanged."""
    explicit = parse_operations(_decode(operations))
    base: list[_Op] = []
    if preset is not None and preset != "":
        if not isinstance(preset, str) or preset not in PRESETS:
            known = ", ".join(sorted(PRESETS))
            raise OperationsError(f"unknown preset {preset!r} (known: {known})",
                                  [{"index": None, "op": None, "field": "preset", "message": "unknown preset"}])
        base = parse_operations(PRESETS[preset])
    models = base + explicit
    if base and explicit:
        problems = _check_order(models)
        if problems:
            raise OperationsError(_sentence(problems[0]) + f" (after preset {preset!r})", problems)
    return [model.model_dump(mode="json", exclude_none=True) for model in models]


def operations_json_schema() -> dict:
    """JSON Schema of an operations list (served at GET /api/v1/operations)."""
    # built on demand: only the API's schema route needs the whole-list adapter
    schema = TypeAdapter(Annotated[list[Operation], Field(max_length=MAX_OPERATIONS)]).json_schema()
    schema["title"] = "ImageFlow operations"
    schema["description"] = ("Operations applied in order. auto_orient, metadata, frames and format are settings "
                             "for the whole render (the later one wins); variants comes after every pixel operation.")
    return schema


# Built-in presets (ARCHITECTURE.md names thumbnail, web and compress).
register_preset("thumbnail", [{"op": "resize", "width": 256, "height": 256, "fit": "cover", "gravity": "smart"}])
register_preset("web", [{"op": "resize", "width": 2048, "height": 2048, "fit": "contain"},
                        {"op": "format", "format": "webp", "quality": 80}])
register_preset("compress", [{"op": "format", "format": "jpeg", "quality": 50, "progressive": True}])
