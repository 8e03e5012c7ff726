"""Request bodies, read the same way on every route that takes one (issue 22).

A field the route does not know is refused with 400 ``unknown_field`` naming it and the closest
known name, instead of being ignored: ``operation=[...]`` (a typo) used to run the job with no
operations at all. A JSON body that does not parse is 400 ``invalid_json``. The known names are
the fields of the request models in ``openapi.py``, so the document and the check agree.
"""
from __future__ import annotations

import difflib
from typing import Iterable

from flask import current_app, request
from pydantic import BaseModel, RootModel

from .errors import Refused, RefusalCode


def field_names(model: type[BaseModel]) -> frozenset[str]:
    """The names a body of ``model`` may carry (each member's, for a RootModel of a union)."""
    if issubclass(model, RootModel):
        annotation = model.model_fields["root"].annotation
        return frozenset().union(*(field_names(member) for member in getattr(annotation, "__args__", ())))
    return frozenset(info.alias or name for name, info in model.model_fields.items())


def refuse_unknown(names: Iterable[str], known: Iterable[str], where: str = "") -> None:
    """400 ``unknown_field`` for any of ``names`` not in ``known``; the message names the first
    and its closest known name, the details each of them."""
    known = sorted(known)
    unknown = sorted({name for name in names if name not in known})
    if not unknown:
        return
    details = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        details.append({"field": f"{where}{name}", "did_you_mean": f"{where}{close[0]}" if close else None})
    first = details[0]
    hint = f"; did you mean `{first['did_you_mean']}`?" if first["did_you_mean"] else \
        f"; the known fields are {', '.join(f'`{where}{k}`' for k in known)}"
    more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
    raise Refused(RefusalCode.UNKNOWN_FIELD, f"unknown field `{first['field'][:100]}`{hint}{more}", details)


def json_body(model: type[BaseModel], *, optional: bool = False, example: str = "{...}") -> dict:
    """The request's JSON object, with no field ``model`` does not know. An empty body is ``{}``
    when ``optional``; anything else that is not a JSON object is a 400. The body is parsed
    whatever its Content-Type says (its size is bounded by body_limits: MAX_JSON_BYTES)."""
    data = request.get_data(cache=True)
    if not data.strip():
        if optional:
            return {}
        raise Refused(RefusalCode.MALFORMED_REQUEST, f"send a JSON object, like {example}")
    try:
        body = current_app.json.loads(data)  # app._JSONProvider: too deep a nesting is a ValueError too
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Refused(RefusalCode.INVALID_JSON, f"the body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise Refused(RefusalCode.MALFORMED_REQUEST, f"send a JSON object, like {example}, not a JSON "
                                                     f"{type(body).__name__}")
    refuse_unknown(body, field_names(model))
    return body


def form_fields(model: type[BaseModel]) -> None:
    """400 for a multipart field (text or file) ``model`` does not know; the form is parsed here
    (a malformed one is a 400 too)."""
    try:
        names = set(request.form) | set(request.files)
    except ValueError as exc:
        raise Refused(RefusalCode.MALFORMED_REQUEST, f"could not read the multipart body: {exc}") from None
    refuse_unknown(names, field_names(model))
