"""Loading a change log: deploys, configuration and load-balancing changes with their time and scope.

Two sources, one shape (a JSON object per change: ``time``, ``id`` or ``change_id``, ``kind``, ``scope``,
``description``; extra keys ignored):

- a running lab or any service answering ``GET /admin/changes`` with a JSON list (or ``{"changes": [...]}``),
  optionally behind a bearer token;
- a JSONL file, one change per line (a file holding one JSON list is accepted too). A malformed line is an
  error naming the file and line.

>>> import json, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "changes.jsonl")
>>> with open(path, "w") as f:
...     _ = f.write(json.dumps({"time": "2025-08-29T10:00:00Z", "id": "lb-7", "kind": "load_balancing",
...                             "scope": {"model": "S"}, "description": "rebalance"}) + "\\n")
>>> [(c.change_id, c.scope) for c in load_changes(path)]
[('lb-7', {'model': 'S'})]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from parity._exceptions import EndpointError, InvalidInputError
from parity.monitor._codec import change_from_dict
from parity.monitor._records import Change

__all__ = ["CHANGES_PATH", "changes_from_json", "load_changes", "load_changes_file", "load_changes_url"]

#: Where a lab (or a deploy system that mimics it) serves its change log.
CHANGES_PATH = "/admin/changes"


def changes_from_json(data: Any, *, source: str = "changes") -> list[Change]:
    """Changes from a decoded JSON list (or ``{"changes": [...]}``), sorted by time.

    >>> [c.change_id for c in changes_from_json([{"time": "2025-08-25T00:00:00Z", "id": "c1", "kind": "deploy"}])]
    ['c1']
    """
    if isinstance(data, dict) and "changes" in data:
        data = data["changes"]
    if not isinstance(data, list):
        raise InvalidInputError(source, "must be a JSON list of changes", type(data).__name__)
    return sorted((change_from_dict(_normalize(d)) for d in data), key=lambda c: c.time)


def _normalize(entry: Any) -> Any:
    """A scope value given as a list (``{"model": ["O", "S"]}``) becomes ``"O,S"`` (see
    ``parity.monitor.detection.attribution.scope_values``)."""
    if isinstance(entry, dict) and isinstance(entry.get("scope"), dict):
        scope = {k: ",".join(map(str, v)) if isinstance(v, list | tuple) else v for k, v in entry["scope"].items()}
        entry = {**entry, "scope": scope}
    return entry


def load_changes_url(url: str, *, token: str | None = None, timeout: float = 10.0) -> list[Change]:
    """``GET`` the change log at ``url`` (a base URL gets ``/admin/changes`` appended)."""
    if not urlsplit(url).path.rstrip("/").endswith(CHANGES_PATH):
        url = url.rstrip("/") + CHANGES_PATH
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.HTTPError as err:
        raise EndpointError(f"cannot fetch the change log: {err}", url=url) from err
    if resp.status_code != 200:
        raise EndpointError(f"answered HTTP {resp.status_code}", url=url, status_code=resp.status_code)
    try:
        data = resp.json()
    except ValueError as err:
        raise EndpointError("answered with invalid JSON", url=url) from err
    return changes_from_json(data, source=url)


def load_changes_file(path: str | Path) -> list[Change]:
    """Changes from a JSONL file (or a file holding one JSON list)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise InvalidInputError("path", "must be a readable change-log file", str(path), detail=str(err)) from err
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            return changes_from_json(json.loads(stripped), source=str(p))
        except json.JSONDecodeError as err:
            raise InvalidInputError(str(p), "must hold valid JSON", detail=str(err)) from err
    out: list[Change] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(change_from_dict(_normalize(json.loads(line))))
        except (json.JSONDecodeError, InvalidInputError, KeyError, ValueError) as err:
            raise InvalidInputError(f"{p}:{lineno}", "must be one JSON change object", detail=str(err)) from err
    return sorted(out, key=lambda c: c.time)


def load_changes(source: str | Path, *, token: str | None = None, timeout: float = 10.0) -> list[Change]:
    """Changes from an ``http(s)://`` URL (see :func:`load_changes_url`) or a file (:func:`load_changes_file`)."""
    text = str(source)
    if text.startswith(("http://", "https://")):
        return load_changes_url(text, token=token, timeout=timeout)
    return load_changes_file(source)
