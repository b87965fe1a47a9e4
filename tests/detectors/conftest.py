from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).parents[1] / "data" / "detectors"


def load(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="session")
def english() -> list[dict[str, str]]:
    return load("english.jsonl")


@pytest.fixture(scope="session")
def code_answers() -> list[dict[str, str]]:
    return load("code.jsonl")


@pytest.fixture(scope="session")
def multilingual() -> list[dict[str, str]]:
    return load("multilingual.jsonl")
