from __future__ import annotations

import pytest

from parity import InvalidInputError
from parity.detectors import DegenerationDetector, ResponseContext

DET = DegenerationDetector()


def score(text: str, **kw: object) -> tuple[bool, float, str | None]:
    obs = DET.score(ResponseContext(text, **kw))  # type: ignore[arg-type]
    return obs.flagged, obs.score, obs.evidence


@pytest.mark.parametrize(
    "text",
    [
        "The answer is simple. " + "Let me think about it again. " * 5,
        "Result: " + "的" * 80,
        "def f():\n" + "    return f()\n" * 6,
        "Here are the steps. First, we sort. " + "Then we sort again and again and again. " * 4 + "\n\n",
    ],
)
def test_tail_loops(text: str) -> None:
    f, s, ev = score(text)
    assert f
    assert s == 1.0
    assert ev


def test_loop_in_the_middle() -> None:
    unit = "the model keeps saying the same thing over and over "
    text = "An introduction to the topic. " + unit * 5 + "and then it finally recovers with a different ending."
    f, _s, ev = score(text)
    assert f
    assert ev is not None
    assert "keeps saying" in ev


@pytest.mark.parametrize(
    "text",
    [
        "| a | b |\n|---|---|\n" + "| 100% (69/69) | 100% (69/69) |\n" * 4,
        "*" * 80 + "\n*  Banner text  *\n" + "*" * 80,
        "0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0",
        "hahaha, that is funny",
        "=" * 60,
        "Varied prose about sampling temperature, nucleus thresholds and the detectors that watch them all day.",
    ],
)
def test_clean_repetitive_looking_text(text: str) -> None:
    assert not score(text)[0]


def test_replacement_mojibake_orphan_marks_and_cut_characters() -> None:
    assert score("Thai text \ufffd here")[2] == "\ufffd"
    assert score("It\u00e2\u20ac\u2122s broken")[0]  # it’s as cp1252
    assert score("A word with an orphan \u0e34mark")[0]  # Thai vowel sign after a space
    assert score("ภาษาไทย บีี")[2] == "ีี"  # the same vowel sign twice on one consonant
    assert score("cut at the end \ud83d")[0]
    f, _, ev = score("ok", tokens=["o", "k", "bytes:\\xe0\\xb8"])
    assert f
    assert ev == "bytes:\\xe0\\xb8"
    # a Thai character split over two byte tokens, completed by the last one: not cut
    assert not score("ok ก", tokens=["ok", " ", "bytes:\\xe0\\xb8", "bytes:\\x81"])[0]
    assert not score("Café, naïve, ภาษาไทย, ελληνικά: well-formed non-ASCII.")[0]


def test_a_character_cut_by_max_tokens_is_no_evidence() -> None:
    # SmolLM2's greedy answer to "Write this in Chinese: File not found", cut by max_tokens mid-character
    cut = "您无法在本地文件中提赊文件。\n\n你可以在本地文件中提赊文件，但是您\ufffd"
    assert not score(cut, finish_reason="length")[0]
    assert score(cut, finish_reason="stop")[2] == "\ufffd"  # a natural end cannot cut a character
    assert score(cut)[0]  # nor can an unknown one be assumed cut
    assert not score("ok", tokens=["o", "k", "bytes:\\xe0\\xb8"], finish_reason="length")[0]
    # only the very end is forgiven: a replacement character inside the text is still flagged
    assert score("bad \ufffd here, then cut \ufffd", finish_reason="length")[2] == "\ufffd"
    # and what precedes the cut is still judged: a loop up to the cut is a loop
    looped = "The answer: " + "Praya kalau, " * 8 + "\ufffd"
    assert score(looped, finish_reason="length")[0]


def test_validation_messages() -> None:
    with pytest.raises(InvalidInputError, match="`max_ngram_repeat_rate` must be in"):
        DegenerationDetector(max_ngram_repeat_rate=0)
    with pytest.raises(InvalidInputError, match="`min_ngrams` must be an int >= 1"):
        DegenerationDetector(min_ngrams=0)


def test_the_monitor_scores_with_the_finish_reason() -> None:
    import json
    from datetime import UTC, datetime

    from parity.monitor.intake.scoring import DetectorScorer, Exchange, parse_exchange

    def verdict(finish: str) -> bool:
        choice = {"index": 0, "message": {"role": "assistant", "content": "你可以\ufffd"}, "finish_reason": finish}
        body = json.dumps({"id": "c1", "object": "chat.completion", "choices": [choice]})
        request = {"model": "m", "messages": [{"role": "user", "content": "Write this in Chinese: hi"}]}
        parsed = parse_exchange(Exchange("/v1/chat/completions", datetime.now(UTC), request, 200, response_body=body))
        scorer = DetectorScorer([DegenerationDetector()])
        return scorer.score(parsed)[0].flagged

    assert (verdict("length"), verdict("stop")) == (False, True)
