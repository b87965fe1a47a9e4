from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parity import InvalidInputError
from parity.detectors import ResponseContext, UnexpectedScriptDetector, expected_scripts, script_histogram

DET = UnexpectedScriptDetector()
DATA = Path(__file__).parents[1] / "data" / "detectors"


def flagged(response: str, prompt: str = "", messages: list[dict[str, str]] | None = None) -> bool:
    return DET.score(ResponseContext(response, prompt=prompt, messages=messages or ())).flagged


def test_thai_in_english_answer_flagged_with_span() -> None:
    text = "Sure, the function returns สวัสดี the sum of both arguments."
    obs = DET.score(ResponseContext(text, prompt="What does add() return?"))
    assert obs.flagged
    assert obs.evidence == "สวัสดี"
    assert obs.span is not None
    assert text[obs.span[0] : obs.span[1]] == "สวัสดี"
    assert obs.score == pytest.approx(6 / len(text))


@pytest.mark.parametrize(
    ("prompt", "response"),
    [
        ("How do I say thank you in Thai?", "ขอบคุณครับ (khop khun khrap)"),
        ("Translate 'data' to Chinese", "数据"),
        ("Write a haiku in Japanese", "古池や 蛙飛び込む 水の音"),
        ("What is hello in Korean?", "안녕하세요"),
        ("Say it in Russian", "Привет, мир"),
        ("ภาษาไทยคืออะไร", "ภาษาไทยเป็นภาษาราชการของประเทศไทย"),
        ("日本語で説明してください", "これは漢字とカタカナを含む文章です"),
        ("Give me greetings in many languages", "Hello, Bonjour, こんにちは, สวัสดี, Привет"),
    ],
)
def test_expected_scripts_are_not_flagged(prompt: str, response: str) -> None:
    assert not flagged(response, prompt)


def test_conversation_messages_count() -> None:
    messages = [{"role": "user", "content": "Let's practise Thai."}, {"role": "assistant", "content": "Sure!"}]
    assert not flagged("Try this: สวัสดี", messages=messages)
    assert flagged("Try this: 你好", messages=messages)


@pytest.mark.parametrize(
    "response",
    [
        "Tokyo (東京) is the capital of Japan.",
        'The dish is called "ラーメン" in Japan.',
        "We reject at α = 0.05 and report Δt in μs.",
        "The parameters α, β and γ, with μ ± σ and ΔE = hν.",
        'Use `print("hello")`.',
        'Example:\n```python\nassert detect("สวัสดี") == "th"\n```\n',
        "Math: ∑ x² ≤ ∞, arrows →, emoji 🙂, dashes — and “quotes”.",
        "Café, naïve, Zürich, São Paulo, Łódź: Latin with diacritics.",
    ],
)
def test_tolerated_non_latin(response: str) -> None:
    assert not flagged(response, "Tell me something.")


def test_long_parenthesised_text_is_not_a_gloss() -> None:
    assert flagged("It is (这是一个非常长的中文句子它不是简单的注释而是插入的文本) clear.", "Explain.")


def test_long_greek_word_is_flagged() -> None:
    assert flagged("The answer is καλημέρα everyone.", "Say good morning.")


def test_code_outside_strings_is_flagged() -> None:
    assert flagged("```python\nx = 1 สวัสดี\n```", "Write code.")


def test_extra_expected_and_validation() -> None:
    det = UnexpectedScriptDetector(extra_expected={"Cyrillic"})
    assert not det.score(ResponseContext("Answer: привет", prompt="hi")).flagged
    with pytest.raises(InvalidInputError, match="`extra_expected` must name scripts"):
        UnexpectedScriptDetector(extra_expected={"Klingon"})
    with pytest.raises(InvalidInputError, match="`max_gloss_chars` must be an int >= 0"):
        UnexpectedScriptDetector(max_gloss_chars=-1)
    assert DET.min_flag_chars == 1
    assert det.extra_expected == frozenset({"Cyrillic"})


def test_min_flag_chars() -> None:
    det = UnexpectedScriptDetector(min_flag_chars=3)
    assert not det.score(ResponseContext("one 的 char")).flagged
    assert det.score(ResponseContext("three 的的的 chars")).flagged


def test_histogram_and_expectations() -> None:
    assert script_histogram("abc") == {}
    assert script_histogram("ก ข 中") == {"Thai": 2, "Han": 1}
    assert {"Hangul", "Han"} <= expected_scripts("in Korean please")
    assert "Thai" not in expected_scripts("Write about Thailand's economy")  # "Thai" only as a whole word


@given(st.text(alphabet=st.characters(max_codepoint=0x24F)))
def test_latin_only_text_is_never_flagged(text: str) -> None:
    obs = DET.score(ResponseContext(text))
    assert not obs.flagged
    assert obs.score == 0.0


def test_bare_completion_expects_its_own_dominant_script() -> None:
    assert not flagged("これは日本語の文章です。漢字とひらがなを含みます。")
    assert flagged("An English completion with สวัสดี in the middle of a fairly long sentence, which is wrong.")


def test_long_conversations_are_not_cached_but_still_read() -> None:
    long_prompt = "Background. " * 1000 + "Now answer in Thai."
    assert not flagged("สวัสดีครับ", long_prompt)
    assert flagged("你好", long_prompt)


def test_translations_inside_markup_in_a_code_block_are_data() -> None:
    xml = '```xml\n<mime-type>\n  <comment xml:lang="sr">ГМЛ документ</comment>\n  <!-- 注释 -->\n</mime-type>\n```'
    assert not flagged(xml, "Show me a MIME definition.")
    assert flagged("```xml\n<a>\n  ГМЛ документ\n</a>\n```", "Show me a MIME definition.")  # bare text line


def test_an_element_declared_in_another_language_is_data_whatever_latin_names_it_holds() -> None:
    """The freedesktop MIME database's translated comments name products in Latin letters ("Office Open XML
    Visio"); their element declares the language, so two Latin words do not make them English text."""
    for comment in ("Шаблон за чертеж — Office Open XML Visio", "Документ Jupyter notebook", "雅達利 Lynx ROM"):
        xml = f'```xml\n<mime-type>\n  <comment xml:lang="bg">{comment}</comment>\n</mime-type>\n```'
        assert not flagged(xml, "Show me a MIME definition.")
    english = (
        '```xml\n<mime-type>\n  <comment xml:lang="en_GB">Visio drawing สวัสดี template</comment>\n</mime-type>\n```'
    )
    assert flagged(english, "Show me a MIME definition.")


@pytest.mark.parametrize(
    "response",
    [
        '```python\ndef total(xs):\n    """Return the สวัสดี sum of xs."""\n    return sum(xs)\n```',
        "```python\ndef total(xs):\n    # add up 的 every item\n    return sum(xs)\n```",
        '```python\nprint("Saved the 文件 to disk")\n```',
        "```python\nresult = compute(สวัสดี)\n```",  # a "gloss" in code is a call's argument: not excused
        '```python\nx = ("数据")\ny = x + "ok"  # done ข้อมูล here\n```',
    ],
)
def test_foreign_words_in_english_code_text_are_flagged(response: str) -> None:
    assert flagged("Here is the function:\n\n" + response, "Write a Python function that sums a list.")


@pytest.mark.parametrize(
    "response",
    [
        '```python\nGREETINGS = {"en": "Hello", "th": "สวัสดี", "zh": "你好", "ja": "こんにちは"}\n```',
        "```python\ndef test_upper():\n    assert 'straße'.upper() == 'STRASSE'\n"
        "    assert 'привет'.upper() == 'ПРИВЕТ'\n```",
        '```xml\n<name xml:lang="ru">Документ</name>\n```',
    ],
)
def test_non_latin_data_in_code_is_not_flagged(response: str) -> None:
    assert not flagged("Sure:\n\n" + response, "Show me an example.")


#: In the real-code set, the only flags: non-Latin *identifiers* (``蟒 = 3``, ``说明说明 = 1``) and a line of a
#: multi-line docstring written in Cyrillic - code no English conversation leads one to expect; no string literal.
EXPECTED_CODE_FLAGS = {
    "cpython:test/test_doctest2.py:C",
    "cpython:test/test_traceback.py:test_byte_offset_with_wide_characters_term_highlight",
    "cpython:test/test_traceback.py:test_byte_offset_with_emojis_term_highlight",
    "cpython:test/test_traceback.py:f",
    "cpython:test/test_unicode_identifiers.py:PEP3131Test",
    "cpython:test/test_unicode_identifiers.py:test_valid",
    "cpython:test/test_unicode_identifiers.py:T",
}


def test_real_code_with_non_latin_data_bounds_false_alarms() -> None:
    """52 functions of CPython's test suite that hold non-Latin text (i18n strings, IDNA and codec fixtures,
    error messages quoting a value), fenced as answers to an English prompt."""
    rows = [json.loads(line) for line in (DATA / "code_non_latin.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 52
    flagged_sources = {r["source"] for r in rows if flagged(r["response"], r["prompt"])}
    assert flagged_sources == EXPECTED_CODE_FLAGS


def test_foreign_words_injected_into_comments_and_literals_of_real_code_are_caught() -> None:
    """A Thai or CJK word at a space inside a comment, docstring or string literal of the real stdlib functions of
    ``code.jsonl`` (184 seeded injections): the code-aware rule catches at least 95% (the old rule, which excused
    every string literal and bracket, caught 128, 70%); the misses are literals with under two English words."""
    import io
    import random
    import tokenize

    rows = [json.loads(line) for line in (DATA / "code.jsonl").read_text(encoding="utf-8").splitlines()]
    rng = random.Random(7)
    words = ["สวัสดี", "ข้อมูล", "你好", "文件", "数据", "こんにちは", "データ", "ภาษา"]
    n = caught = 0
    for row in rows:
        text = row["response"]
        if "```python" not in text:
            continue
        start = text.index("```python\n") + 10
        code = text[start : text.index("\n```", start)]
        lines = code.splitlines(keepends=True)
        spots: list[int] = []
        try:
            for tok in tokenize.generate_tokens(io.StringIO(code).readline):
                if tok.type in (tokenize.COMMENT, tokenize.STRING):
                    offset = sum(len(x) for x in lines[: tok.start[0] - 1]) + tok.start[1]
                    spots += [offset + i for i, c in enumerate(tok.string) if c == " "]
        except (tokenize.TokenError, SyntaxError, IndentationError):
            continue
        for _ in range(4 if spots else 0):
            at = start + rng.choice(spots)
            n += 1
            caught += flagged(text[:at] + " " + rng.choice(words) + text[at:], row["prompt"])
    assert n == 184
    assert caught >= 0.95 * n
