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


def test_validation_messages() -> None:
    with pytest.raises(InvalidInputError, match="`max_ngram_repeat_rate` must be in"):
        DegenerationDetector(max_ngram_repeat_rate=0)
    with pytest.raises(InvalidInputError, match="`min_ngrams` must be an int >= 1"):
        DegenerationDetector(min_ngrams=0)
