from __future__ import annotations

import pytest

from parity import InvalidInputError
from parity.detectors import CodeIntegrityDetector, ResponseContext
from parity.detectors._code import check_json, check_python, code_blocks

DET = CodeIntegrityDetector()

FUNC = """def mean(values):
    total = 0
    for v in values:
        total += v
    return total / len(values)
"""


def answer(code: str, tag: str = "python", after: str = "\n\nThat computes it.") -> str:
    return f"Here you go:\n\n```{tag}\n{code}```{after}"


def test_valid_code_is_clean() -> None:
    obs = DET.score(ResponseContext(answer(FUNC)))
    assert not obs.flagged
    assert obs.score == 0.0


@pytest.mark.parametrize(
    ("broken", "bad_line"),
    [
        (FUNC.replace("total += v", "total += v)"), "        total += v)"),
        (FUNC.replace("for v in", "for v สวัสดี in"), "    for v สวัสดี in values:"),
        (FUNC.replace("total = 0", "total = 0 ::"), "    total = 0 ::"),
        (FUNC.replace("return total", "return 的 total"), "    return 的 total / len(values)"),
        (FUNC.replace("def mean(values):", "def mean(values)):"), "def mean(values)):"),
    ],
)
def test_injected_token_is_flagged_with_the_line(broken: str, bad_line: str) -> None:
    text = answer(broken)
    obs = DET.score(ResponseContext(text))
    assert obs.flagged
    assert obs.score == 1.0
    assert obs.evidence == bad_line
    assert obs.span is not None
    assert text[obs.span[0] : obs.span[1]] == bad_line


@pytest.mark.parametrize(
    "code",
    [
        "    def method(self):\n        return self.x\n",  # indented method body
        "for item in items:\n    process(item,\n",  # cut by max_tokens (last block)
        "x = compute(\n",  # open call at the end of the block
        "def f():\n    ...\n",  # placeholder body
        "client = Client(api_key=<your key>)\nclient.run()\n",  # placeholder
        "result = fetch(…)\nprint(result)\n",  # unicode ellipsis placeholder
        "print 'hello'\n",  # Python 2
        "pip install parity\nimport parity\n",  # shell line in a python fence
        "$ python -m parity\n",
        ">>> x = [1, 2]\n>>> len(x)\n2\n",  # REPL session
        ">>> d = Builder.new()\\\n.with_x(1)\\\n.build()\n",  # REPL continuation without "... "
        "if x:\n",  # open block at the end
        "SELECT * FROM t;\n",  # another language mislabelled
    ],
)
def test_legitimately_partial_snippets_are_not_flagged(code: str) -> None:
    assert not DET.score(ResponseContext(answer(code))).flagged


def test_truncated_answer_is_tolerated() -> None:
    cut = "Sure:\n```python\ndef mean(values):\n    total = sum(values\n    "
    assert not DET.score(ResponseContext(cut)).flagged
    cut_mid = answer("def f(x):\n    return g(x,\n", after="")
    assert not DET.score(ResponseContext(cut_mid, finish_reason="length")).flagged


def test_the_line_max_tokens_cut_is_no_evidence() -> None:
    # SmolLM2's greedy answer to "What does `shutil.rmtree` do?", cut by max_tokens after `os.`
    cut = "Here's a basic example:\n\n```python\nimport os\n\ndef remove_tree(path):\n    return os."
    assert not DET.score(ResponseContext(cut, finish_reason="length")).flagged
    assert not DET.score(ResponseContext("```python\nx = os.", finish_reason="length")).flagged
    # the same text not cut by max_tokens is a stray `.`; an error above the cut line is still judged
    assert DET.score(ResponseContext(cut, finish_reason="stop")).flagged
    injected = "```python\nimport os)\npath = os.getcwd()\nos.remove(pa"
    assert DET.score(ResponseContext(injected, finish_reason="length")).evidence == "import os)"
    # a block closed before the cut keeps its last line
    closed = answer("x = 1\ny = os.\n", after="\n\nMore text cut here")
    assert DET.score(ResponseContext(closed, finish_reason="length")).flagged


def test_unexplained_error_scores_but_does_not_flag() -> None:
    obs = DET.score(ResponseContext(answer("this is not python at all but prose in a fence\nmore prose here\nend\n")))
    assert not obs.flagged
    assert obs.score == pytest.approx(0.25)


def test_json_blocks() -> None:
    good = '{"name": "parity", "tags": ["a", "b"], "n": 3}\n'
    assert not DET.score(ResponseContext(answer(good, "json"))).flagged
    assert DET.score(ResponseContext(answer(good.replace('"b"]', '"b"]]'), "json"))).flagged
    assert not DET.score(ResponseContext(answer('{"a": [1, 2,], "b": 1}\n', "json"))).flagged  # trailing comma
    assert not DET.score(ResponseContext(answer('{"a": 1, // comment\n"b": 2}\n', "json"))).flagged
    assert not DET.score(ResponseContext('```json\n{"a": [1, 2], "b": tr')).flagged  # truncated
    assert check_json("[1, 2, 3]") == (0.0, 0)


def test_inferred_blocks() -> None:
    assert DET.score(ResponseContext("import os\nprint(os.getcwd()))\nx = 1\n")).flagged  # whole response is code
    assert not DET.score(ResponseContext("Use import statements wisely.\nThey matter.")).flagged
    assert DET.score(ResponseContext(answer('{"a": 1}} \n', ""))).flagged  # untagged JSON
    # a /v1/completions continuation is parsed together with its prompt
    prompt = "def add(a, b):\n"
    assert not DET.score(ResponseContext("    return a + b\n", prompt=prompt)).flagged
    assert DET.score(ResponseContext("    return a + b)\n\nx = add(1, 2)\n", prompt=prompt)).flagged


def test_code_blocks_and_helpers() -> None:
    blocks = code_blocks("a\n~~~py\nx = 1\n~~~\n````python\ny = 2\n````\n")
    assert [(b.language, b.code) for b in blocks] == [("py", "x = 1\n"), ("python", "y = 2\n")]
    assert check_python("x = (1,\n", final=True) == (0.0, 0)
    with pytest.raises(InvalidInputError, match="`languages` must be a subset"):
        CodeIntegrityDetector(languages={"rust"})


def test_other_languages_are_not_judged() -> None:
    assert not DET.score(ResponseContext(answer('fn main() { println!("hi") }}\n', "rust"))).flagged


def test_toml_and_xml_blocks() -> None:
    toml = '[project]\nname = "parity"\ndependencies = ["numpy", "regex"]\n'
    assert not DET.score(ResponseContext(answer(toml, "toml"))).flagged
    assert DET.score(ResponseContext(answer(toml.replace('"regex"]', '"regex"]]'), "toml"))).flagged
    assert not DET.score(ResponseContext(answer('[tool]\nkey = "..." \nother = ...\n', "toml"))).flagged
    xml = '<project>\n  <dependency id="a"/>\n  <name>Tom &amp; Jerry</name>\n</project>\n<extra/>\n'
    assert not DET.score(ResponseContext(answer(xml, "xml"))).flagged
    assert DET.score(ResponseContext(answer(xml.replace("<name>", "<name>>>< "), "xml"))).flagged
    assert not DET.score(ResponseContext(answer(xml.replace("&amp;", "&"), "xml"))).flagged  # bare & by hand
    assert not DET.score(ResponseContext(answer('<!DOCTYPE x [<!ENTITY a "b">]>\n<x>&a;</x>\n', "xml"))).flagged
    assert not DET.score(ResponseContext("```xml\n<root>\n  <item>cut by max_tokens</ite")).flagged
    assert not CodeIntegrityDetector(languages={"python"}).score(ResponseContext(answer("a = ]\n", "toml"))).flagged
