"""One outcome vocabulary: every error_code an image can carry is a member of domain.ErrorCode, is
published in the OpenAPI document, is in docs/api.md's table and has words on the page
(frontend/src/lib/jobs.js); nothing there names a code the server never sends, and no other
Python module spells a code as a string of its own."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from imageflow.domain import ErrorCode
from imageflow.engine import ImageError
from services.image_handler.openapi import document

ROOT = Path(__file__).resolve().parents[2]
CODES = {code.value for code in ErrorCode}


def documented_codes() -> list[str]:
    api = (ROOT / "docs/api.md").read_text()
    table = api[api.index("| `error_code` | meaning |"):]
    table = table[:table.index("\n\n")]
    return [code for code in re.findall(r"^\| `([a-z_]+)` \|", table, re.M) if code != "error_code"]


def test_every_code_is_documented_with_its_meaning():
    assert sorted(documented_codes()) == sorted(CODES)


def test_the_openapi_document_publishes_the_same_codes_in_the_same_order_as_the_docs():
    image = document()["components"]["schemas"]["ImageView"]["properties"]["error_code"]
    published = next(choice["enum"] for choice in image["anyOf"] if "enum" in choice)
    assert published == [code.value for code in ErrorCode] == documented_codes()


def test_the_engine_raises_only_its_own_codes():
    assert set(ImageError.CODES) <= set(ErrorCode)
    assert ImageError("corrupt", "x").code is ErrorCode.CORRUPT     # a plain string is read as its member
    assert json.dumps({"error_code": ErrorCode.TOO_LARGE}) == '{"error_code": "too_large"}'   # the API's strings


def test_the_page_has_words_for_every_code_and_no_other():
    source = (ROOT / "frontend/src/lib/jobs.js").read_text()
    words = source[source.index("ERROR_WORDS"):]
    words = words[:words.index("};")]
    assert set(re.findall(r"^\s+([a-z_]+):", words, re.M)) == CODES


# Modules where a code's word means something else: the URL fetcher's reasons (FetchError codes,
# listed in a URL job's ``rejected``, never an image's error_code), a decoder's message searched
# for a word, a keyword argument.
OTHER_VOCABULARIES = {"imageflow/safe_http.py": {"too_large", "timeout"},
                      "imageflow/engine/failures.py": {"unsupported"},
                      "imageflow_cli/__init__.py": {"timeout"}}


def test_each_code_is_spelled_in_one_python_module():
    """``grep '"<code>"'`` finds each code in domain.py alone: every other module names the member."""
    files = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    spelled: dict[str, set[str]] = {code: set() for code in CODES}
    for name in files:
        if name.startswith("tests/") or name.startswith("bench/"):
            continue
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        for code in CODES:
            if re.search(rf"[\"']{code}[\"']", text) and code not in OTHER_VOCABULARIES.get(name, ()):
                spelled[code].add(name)
    assert {code: sorted(names) for code, names in spelled.items() if names != {"imageflow/domain.py"}} == {}


def test_request_codes_are_spelled_once_and_each_has_one_status():
    """Every ``error.code`` the image-handler answers is a RefusalCode, spelled in errors.py only,
    and every one with a status of its own is in the one STATUS table."""
    from services.image_handler.errors import STATUS, RefusalCode, Refused

    varying = {RefusalCode.NO_VALID_IMAGES, RefusalCode.INVALID_OVERLAY}   # 413 or 415: intake picks
    per_file = {RefusalCode.TOO_LARGE, RefusalCode.UNSUPPORTED_IMAGE, RefusalCode.EMPTY_FILE}  # in rejected[]
    assert set(RefusalCode) - set(STATUS) == varying | per_file
    assert Refused(RefusalCode.JOB_CLOSED, "closed").status == 409
    assert {RefusalCode.FILE_TOO_LARGE, RefusalCode.TOO_LARGE, RefusalCode.QUOTA_EXCEEDED} <= set(ErrorCode)
    files = subprocess.run(["git", "ls-files", "services/image_handler/*.py"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    elsewhere = {}
    for name in files:
        if name.endswith("errors.py") or name.endswith("server.py"):  # server.py: the 408 written before Flask
            continue
        text = (ROOT / name).read_text()
        found = [code.value for code in RefusalCode if re.search(rf"[\"']{code.value}[\"']", text)]
        if found:
            elsewhere[name] = found
    assert elsewhere == {}
