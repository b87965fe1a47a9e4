"""Clean real text (shipped on the machine, see tests/data/detectors) is not flagged; injected faults are."""

from __future__ import annotations

import ast
import random
import warnings

import pytest

from parity.detectors import (
    CodeIntegrityDetector,
    DegenerationDetector,
    ResponseContext,
    UnexpectedScriptDetector,
    default_detectors,
    score_response,
)

THAI = ["สวัสดี", "ครับ", "การตั้งค่า", "ไม่", "ภาษาไทย"]
HAN = ["你好", "的", "世界", "中文字符", "数据"]


def _ctx(row: dict[str, str]) -> ResponseContext:
    return ResponseContext(row["response"], prompt=row["prompt"])


def test_clean_english_is_not_flagged(english: list[dict[str, str]]) -> None:
    detectors = default_detectors()
    flagged = [(r["source"], o.detector) for r in english for o in score_response(_ctx(r), detectors) if o.flagged]
    assert flagged == []


def test_clean_code_answers_are_not_flagged(code_answers: list[dict[str, str]]) -> None:
    detectors = default_detectors()
    flagged = [(r["source"], o.detector) for r in code_answers for o in score_response(_ctx(r), detectors) if o.flagged]
    assert flagged == []


def test_requested_languages_are_not_flagged(multilingual: list[dict[str, str]]) -> None:
    detectors = default_detectors()
    flagged = [
        (r["source"], o.detector, o.evidence)
        for r in multilingual
        for o in score_response(_ctx(r), detectors)
        if o.flagged
    ]
    # the one mixed Chinese/Korean codec test text: Korean after a Chinese-only prompt is unexpected (README)
    korean = "파이썬은 강력한 기능을 지닌 범용 컴퓨터 프로그래밍 언어다"
    assert flagged == [("cjk:gb18030-utf8.txt", "unexpected_script", korean)]


def test_translation_without_naming_the_language_is_flagged(multilingual: list[dict[str, str]]) -> None:
    det = UnexpectedScriptDetector()
    thai = [r for r in multilingual if r["source"] == "gettext:th"]
    assert thai
    for r in thai:
        assert not det.score(_ctx(r)).flagged
        neutral = ResponseContext(r["response"], prompt=r["prompt"].replace("into Thai", "please"))
        assert det.score(neutral).flagged


@pytest.mark.parametrize("pool", [THAI, HAN], ids=["thai", "han"])
def test_injected_script_spans_are_caught_with_their_span(english: list[dict[str, str]], pool: list[str]) -> None:
    rng = random.Random(7)
    det = UnexpectedScriptDetector()
    for r in english:
        text = r["response"]
        at = rng.choice([i for i, c in enumerate(text) if c == " "])
        word = rng.choice(pool)
        obs = det.score(ResponseContext(text[:at] + " " + word + text[at:], prompt=r["prompt"]))
        assert obs.flagged, r["source"]
        assert obs.span == (at + 1, at + 1 + len(word))
        assert obs.evidence == word


def _inject(block_answer: str, rng: random.Random) -> str | None:
    head, _, rest = block_answer.partition("```python\n")
    block, _, tail = rest.partition("\n```")
    lines = block.split("\n")
    k = rng.choice([i for i, ln in enumerate(lines) if ln.strip() and not ln.strip().startswith("#")])
    line = lines[k]
    pos = rng.choice([i for i, c in enumerate(line) if c in " (),:=[]"] or [0])
    lines[k] = line[:pos] + rng.choice([")", "]", ":", "สวัสดี", "的", "::", ") )"]) + line[pos:]
    broken = "\n".join(lines)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(broken)
    except SyntaxError:
        return head + "```python\n" + broken + "\n```" + tail
    return None  # the injection left valid Python: nothing a parser could see


def test_injected_code_tokens_are_caught(code_answers: list[dict[str, str]]) -> None:
    rng = random.Random(3)
    det = CodeIntegrityDetector()
    functions = [r for r in code_answers if r["source"].startswith("function:")]
    results = []
    for r in functions * 4:
        broken = _inject(r["response"], rng)
        if broken is not None:
            results.append(det.score(ResponseContext(broken, prompt=r["prompt"])).flagged)
    assert len(results) >= 60
    # the benchmark measures 97.5% over 446 injections; misses are unclosed brackets in a block's last lines,
    # which the truncation rule must tolerate
    assert sum(results) / len(results) >= 0.9


def test_degeneration_faults_are_caught(english: list[dict[str, str]]) -> None:
    det = DegenerationDetector()
    for r in english[:20]:
        text = r["response"]
        sentence = max(text.split(". "), key=len)[:80]
        assert det.score(ResponseContext(text + " " + (sentence + ". ") * 5)).flagged
        assert det.score(ResponseContext(text[:50] + "\ufffd" + text[50:])).flagged
        assert det.score(ResponseContext(text[:50] + " caf" + "é".encode().decode("cp1252") + text[50:])).flagged
