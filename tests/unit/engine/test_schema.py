"""The operations schema: validation that names the item and the field, normalisation,
presets, and the exported JSON Schema."""
from __future__ import annotations

import json

import pytest

from imageflow.engine import schema as ops
from imageflow.engine.schema import (PRESETS, OperationsError, operations_json_schema, register_preset,
                                  resolve_operations)


def error_of(operations, preset=None) -> OperationsError:
    with pytest.raises(OperationsError) as err:
        resolve_operations(preset, operations)
    return err.value


def test_neither_preset_nor_operations_is_empty():
    assert resolve_operations(None, None) == [] == resolve_operations("", "") == resolve_operations(None, "[]")


def test_defaults_filled_and_json_string_accepted():
    result = resolve_operations(None, '[{"op": "resize", "width": 300}, {"op": "format", "format": "webp"}]')
    assert result == [
        {"op": "resize", "width": 300, "fit": "contain", "upscale": False, "gravity": "center"},
        {"op": "format", "format": "webp", "progressive": False, "lossless": False, "background": "#ffffff"},
    ]
    json.dumps(result)


def test_resolving_is_idempotent():
    once = resolve_operations("web", [{"op": "rotate", "degrees": 10, "background": "Red"},
                                      {"op": "crop", "aspect": "16:9"}])
    assert resolve_operations(None, once) == once
    assert once[-2]["background"] == "#ff0000"


def test_preset_then_explicit_operations():
    result = resolve_operations("compress", [{"op": "resize", "width": 100}])
    assert result[0] == {"op": "format", "format": "jpeg", "quality": 50, "progressive": True,
                         "lossless": False, "background": "#ffffff"}
    assert result[1]["op"] == "resize"


def test_builtin_presets():
    assert {"thumbnail", "web", "compress"} <= set(PRESETS)
    formats = [op for op in PRESETS["compress"] if op["op"] == "format"]
    assert formats[0]["format"] == "jpeg" and formats[0]["quality"] == 50


def test_unknown_preset():
    err = error_of(None, preset="nope")
    assert "unknown preset 'nope'" in err.message and "thumbnail" in err.message
    assert err.details[0]["field"] == "preset"


def test_register_preset_validates_and_is_usable():
    register_preset("avatar-test", [{"op": "resize", "width": 64, "height": 64, "fit": "cover"}])
    try:
        assert resolve_operations("avatar-test", None)[0]["width"] == 64
        with pytest.raises(OperationsError):
            register_preset("broken-test", [{"op": "resize"}])
        with pytest.raises(OperationsError):
            register_preset("Bad Name", [])
        assert "broken-test" not in PRESETS
    finally:
        PRESETS.pop("avatar-test", None)


def test_load_presets_from_json(tmp_path):
    path = tmp_path / "presets.json"
    path.write_text(json.dumps({"banner-test": [{"op": "crop", "aspect": "3:1"}]}))
    try:
        assert ops.load_presets(str(path)) == ["banner-test"]
        assert resolve_operations("banner-test", None)[0]["aspect"] == "3:1"
    finally:
        PRESETS.pop("banner-test", None)


@pytest.mark.parametrize("operations, message, detail", [
    ([{"op": "resize", "width": 100}, {"op": "resize", "width": 0}],
     "operations[1] (resize): width must be > 0", {"index": 1, "op": "resize", "field": "width"}),
    ([{"op": "resize"}], "operations[0] (resize): give width, height or both", {"index": 0, "field": None}),
    ([{"op": "rotate"}], "operations[0] (rotate): degrees is required", {"field": "degrees"}),
    ([{"op": "resize", "width": 10, "fit": "squash"}],
     "operations[0] (resize): fit must be 'contain', 'cover' or 'fill'", {"field": "fit"}),
    ([{"op": "blur", "radius": 10, "strength": 2}], "operations[0] (blur): strength is not a parameter of this op",
     {"field": "strength"}),
    ([{"op": "explode"}], "operations[0] (explode): unknown op 'explode'", {"field": "op"}),
    ([{"width": 3}], 'operations[0]: missing "op"', {"field": "op"}),
    (["resize"], "operations[0]: must be an object", {"index": 0}),
    ([{"op": "format", "format": "bmp"}], "operations[0] (format): format must be", {"field": "format"}),
    ([{"op": "format", "format": "jpeg", "quality": 101}], "operations[0] (format): quality must be <= 100",
     {"field": "quality"}),
    ([{"op": "rotate", "degrees": 5, "background": "notacolour"}], "background", {"field": "background"}),
    ([{"op": "crop", "width": 10}], "give width and height (or aspect)", {"op": "crop"}),
    ([{"op": "crop", "aspect": "0:3"}], "aspect", {"field": "aspect"}),
    ([{"op": "variants", "widths": [100, 0]}], "operations[0] (variants): widths[1] must be > 0",
     {"field": "widths[1]"}),
    ([{"op": "variants", "widths": [100]}, {"op": "grayscale"}], "operations[1] (grayscale): must come before variants",
     {"index": 1}),
    ({"op": "resize"}, "operations must be a JSON list", {}),
    ("[{", "operations are not valid JSON", {}),
])
def test_errors_name_the_item_and_the_field(operations, message, detail):
    err = error_of(operations)
    assert message in err.message
    assert isinstance(err, ValueError) and err.details
    for key, value in detail.items():
        assert err.details[0][key] == value


def test_every_problem_is_listed():
    err = error_of([{"op": "resize", "width": 0, "height": -1}, {"op": "blur", "radius": 0}])
    assert {(d["index"], d["field"]) for d in err.details} == {(0, "width"), (0, "height"), (1, "radius")}


def test_too_many_operations():
    assert "at most" in error_of([{"op": "grayscale"}] * (ops.MAX_OPERATIONS + 1)).message


def test_settings_may_follow_variants_and_preset_order_is_checked():
    resolve_operations(None, [{"op": "variants", "formats": ["webp"]}, {"op": "format", "format": "jpeg"}])
    register_preset("variants-test", [{"op": "variants", "widths": [100]}])
    try:
        assert "after preset" in error_of([{"op": "blur"}], preset="variants-test").message
    finally:
        PRESETS.pop("variants-test", None)


def test_json_schema_lists_every_operation():
    schema = operations_json_schema()
    assert schema["type"] == "array"
    json.dumps(schema)
    names = {definition["properties"]["op"]["const"] for definition in schema["$defs"].values()
             if "op" in definition.get("properties", {})}
    assert names == set(ops.OPERATION_MODELS)
    resize = schema["$defs"]["Resize"]["properties"]
    assert resize["fit"]["enum"] == ["contain", "cover", "fill"] and resize["width"]["anyOf"][0]["maximum"] == 16384


@pytest.mark.parametrize("name, known_as", [("logos/a.png", "a.png"), ("C:\\art\\logo.webp", "logo.webp")])
def test_an_overlay_file_named_with_a_folder_is_refused_with_the_name_it_would_have(name, known_as):
    """An uploaded overlay is known by its bare name, so a name with a folder could never match
    a file sent with the job: refused when the operations are checked (a saved preset too)."""
    with pytest.raises(OperationsError) as refused:
        ops.parse_operations([{"op": "overlay", "image": name}])
    assert "without folders" in str(refused.value) and repr(known_as) in str(refused.value)
    assert ops.parse_operations([{"op": "overlay", "image": known_as}])
    assert ops.parse_operations([{"op": "overlay", "image": "https://cdn.example/logos/a.png"}])
