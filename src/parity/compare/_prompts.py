"""The prompt set that ships with parity, and loading a user's prompt file.

The default set mixes prose, code and a few multilingual prompts: the incident's corruption showed up as
Thai/CJK characters in English answers and as syntax errors in code, so both kinds of context are covered.

>>> len(DEFAULT_PROMPTS) >= 30
True
>>> load_prompts(None) == list(DEFAULT_PROMPTS)
True
"""

from __future__ import annotations

import json
from pathlib import Path

from parity._exceptions import InvalidInputError

__all__ = ["DEFAULT_PROMPTS", "load_prompts"]

DEFAULT_PROMPTS: tuple[str, ...] = (
    # prose
    "The history of the printing press begins",
    "In the morning, the old fisherman walked down to the harbour and",
    "A good unit test should",
    "The main reason rivers flood in spring is",
    "Once upon a time, in a small village by the sea,",
    "The committee met on Tuesday to discuss",
    "To make a cup of tea, first",
    "Photosynthesis is the process by which",
    "The weather forecast for tomorrow says",
    "She opened the letter and read the first line:",
    "The difference between a list and a tuple is",
    "Installation instructions: to install the package,",
    "Error handling in a web server matters because",
    "The train left the station at noon, and",
    # code
    "def fibonacci(n):\n    ",
    "import numpy as np\n\ndef normalize(x):\n    ",
    "class Stack:\n    def __init__(self):\n        ",
    "for i in range(10):\n    ",
    "def read_config(path):\n    with open(path) as f:\n        ",
    "# Compute the mean of a list\ndef mean(values):\n    ",
    'if __name__ == "__main__":\n    ',
    "def is_prime(n: int) -> bool:\n    ",
    '{"name": "parity", "version": ',
    "SELECT name, count(*) FROM users WHERE",
    "function add(a, b) {\n  ",
    "#include <stdio.h>\n\nint main(void) {\n    ",
    # multilingual
    "La ville de Paris est connue pour",
    "Der schnelle braune Fuchs springt",
    "El río más largo del mundo es",
    "Translate to Thai: good morning ->",
    "日本の首都は",
    "สวัสดีครับ วันนี้",
)


def load_prompts(path: str | Path | None) -> list[str]:
    """Prompts from ``path`` (a ``.jsonl`` of ``{"prompt": ...}`` objects or strings, a ``.json`` list, or a text
    file with one prompt per line; ``\\n`` escapes allowed), or the default set when ``path`` is ``None``."""
    if path is None:
        return list(DEFAULT_PROMPTS)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise InvalidInputError("prompts", "must be a readable file", str(path), detail=err.strerror) from err
    prompts: list[str] = []
    try:
        if file.suffix == ".json":
            data = json.loads(text)
            items = data if isinstance(data, list) else []
            prompts = [item if isinstance(item, str) else str(item["prompt"]) for item in items]
        elif file.suffix == ".jsonl":
            for line in text.splitlines():
                if line.strip():
                    item = json.loads(line)
                    prompts.append(item if isinstance(item, str) else str(item["prompt"]))
        else:
            prompts = [line.replace("\\n", "\n") for line in text.splitlines() if line.strip()]
    except (ValueError, KeyError, TypeError) as err:
        raise InvalidInputError(
            "prompts", "must hold prompt strings or objects with a `prompt` key", str(path), detail=str(err)
        ) from err
    if not prompts:
        raise InvalidInputError("prompts", "must contain at least one prompt", str(path))
    return prompts
