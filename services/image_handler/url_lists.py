"""URL lists for import jobs (JSON ``urls`` or a CSV upload): parsed, checked and normalised by
the image-handler, which creates one queued image per URL with nothing stored yet."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Iterable
from urllib.parse import unquote, urlsplit

from imageflow.safe_http import FetchError, validate_url

from .errors import RefusalCode

MAX_CSV_BYTES = 32 * 1024 * 1024  # 100,000 rows (MAX_URLS_PER_JOB) with a few columns each
MAX_META_COLUMNS = 10
MAX_META_VALUE = 500


class TooManyUrls(FetchError):
    """The list holds more URLs than a job may have (parsing stopped there)."""

    def __init__(self, limit: int):
        super().__init__(RefusalCode.TOO_MANY_URLS, f"too many URLs: more than {limit} sent, at most {limit} "
                                                    "per job (MAX_URLS_PER_JOB)")


def filename_from_url(url: str, default: str = "image") -> str:
    """The last path segment of the URL (percent-decoded), or ``default``."""
    segment = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return segment[:255] or default


@dataclass
class UrlEntry:
    """One URL to import, with the extra columns of its CSV row (name, product, ...)."""

    url: str
    meta: dict = field(default_factory=dict)
    row: int = 0

    @property
    def filename(self) -> str:
        return self.meta.get("name") or filename_from_url(self.url)


@dataclass
class RejectedUrl:
    row: int
    url: str
    code: str
    message: str

    def to_dict(self) -> dict:
        return {"row": self.row, "url": self.url[:200], "error": {"code": self.code, "message": self.message}}


def _clean_meta(meta: dict) -> dict:
    cleaned = {}
    for key, value in list(meta.items())[:MAX_META_COLUMNS]:
        key = "".join(ch for ch in str(key or "").strip().lower() if ch.isalnum() or ch in "_-")[:40]
        if key and key != "url" and value not in (None, ""):
            cleaned[key] = str(value).strip()[:MAX_META_VALUE]
    return cleaned


def check_entries(entries: Iterable[UrlEntry]) -> tuple[list[UrlEntry], list[RejectedUrl]]:
    """Split entries into valid ones (URL normalised) and rejected ones (with the reason)."""
    good, bad = [], []
    for entry in entries:
        try:
            entry.url = validate_url(entry.url)
        except FetchError as exc:
            bad.append(RejectedUrl(entry.row, str(entry.url or ""), exc.code, f"row {entry.row}: {exc.reason}"))
            continue
        good.append(entry)
    return good, bad


def entries_from_json(items, max_rows: int | None = None) -> list[UrlEntry]:
    """``["https://...", {"url": "https://...", "name": ..., "product": ...}]`` -> entries.
    Raises FetchError when the list itself is malformed, TooManyUrls past ``max_rows`` entries."""
    if not isinstance(items, list) or not items:
        raise FetchError("invalid_urls", "'urls' must be a non-empty list of URLs")
    if max_rows is not None and len(items) > max_rows:
        raise TooManyUrls(max_rows)
    entries = []
    for row, item in enumerate(items, start=1):
        if isinstance(item, str):
            entries.append(UrlEntry(item, row=row))
        elif isinstance(item, dict) and isinstance(item.get("url"), str):
            entries.append(UrlEntry(item["url"], _clean_meta({k: v for k, v in item.items()
                                                              if isinstance(v, (str, int, float))}), row))
        else:
            raise FetchError("invalid_urls", f"urls[{row - 1}] must be a URL string or an object with a 'url'")
    return entries


def entries_from_csv(data: bytes, max_rows: int | None = None) -> list[UrlEntry]:
    """A CSV of URLs: either a header row with a ``url`` column (other columns, e.g. ``name``
    and ``product``, are kept), or no header and the URL in the first column. Blank rows are
    skipped. Raises FetchError for an unreadable file, and TooManyUrls as soon as it has read
    more than ``max_rows`` URL rows (the rest of the file is not parsed)."""
    if len(data) > MAX_CSV_BYTES:
        raise FetchError("csv_too_large", f"the CSV is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FetchError("invalid_csv", "the CSV is not UTF-8 text") from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = []
    try:
        reader = csv.reader(io.StringIO(text), dialect)
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((reader.line_num, row))
                if max_rows is not None and len(rows) > max_rows + 1:  # + 1: the first row may be a header
                    raise TooManyUrls(max_rows)
    except csv.Error as exc:
        raise FetchError("invalid_csv", f"the CSV is malformed: {exc}") from None
    if not rows:
        raise FetchError("invalid_csv", "the CSV has no rows")
    header = [cell.strip().lower() for cell in rows[0][1]]
    if "url" not in header and max_rows is not None and len(rows) > max_rows:
        raise TooManyUrls(max_rows)
    if "url" in header:
        column = header.index("url")
        return [UrlEntry(row[column] if column < len(row) else "", _clean_meta(dict(zip(header, row))), number)
                for number, row in rows[1:]]
    return [UrlEntry(row[0], {}, number) for number, row in rows]
