"""One outcome vocabulary: every error_code an image can carry is in docs/api.md's table and has
words on the page (frontend/src/lib/jobs.js), and nothing there names a code the server never sends."""
from __future__ import annotations

import re
from pathlib import Path

from imageflow.domain import ERROR_CODES
from imageflow.engine import ImageError

ROOT = Path(__file__).resolve().parents[2]
CODES = {*ImageError.CODES, *ERROR_CODES}


def test_every_code_is_documented_with_its_meaning():
    api = (ROOT / "docs/api.md").read_text()
    table = api[api.index("| `error_code` | meaning |"):]
    table = table[:table.index("\n\n")]
    assert set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M)) - {"error_code"} == CODES


def test_the_page_has_words_for_every_code_and_no_other():
    source = (ROOT / "frontend/src/lib/jobs.js").read_text()
    words = source[source.index("ERROR_WORDS"):]
    words = words[:words.index("};")]
    assert set(re.findall(r"^\s+([a-z_]+):", words, re.M)) == CODES
