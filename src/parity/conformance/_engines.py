"""Adapters that put the samplers of real serving engines behind the kit's protocols, calling the engines' own code.

Each adapter calls the engine's code, never a re-implementation of it; only the plumbing around it (building the
engine's inputs from the kit's parameters, reading the kept set back) is ours, and it follows what the engine's
own request path does. Versions are read from the installed distributions (:func:`engine_versions`).

* ``llamacpp`` (numpy; filter :func:`llamacpp_filter`, sampler :func:`llamacpp_sampler`): llama.cpp's sampler
  chain through llama-cpp-python's low-level C API (``llama_sampler_chain_init``, ``llama_sampler_init_top_k``,
  ``..._top_p``, ``..._min_p``, ``..._temp``, ``..._dist``, ``llama_sampler_apply``) on a
  ``llama_token_data_array`` built from the logits; no model, vocabulary or context is needed (these samplers only
  read the array). The chain is llama.cpp's default order, the one llama-cpp-python's ``Llama._init_sampler``
  builds: top-k, top-p (min_keep 1), min-p (min_keep 1), temperature **last** (:data:`LLAMACPP_ORDER`); the filter
  reads back the candidates left in the array (``size`` shrinks, the kept logits are divided by the temperature),
  the sampler adds the ``dist`` sampler seeded with ``seed`` (temperature 0: the ``greedy`` sampler, as
  ``_init_sampler`` does). All four parameters are supported; llama.cpp disables top-k at ``k <= 0``, top-p at
  ``p >= 1`` and min-p at ``p <= 0`` itself.
* ``vllm`` (torch; filter :func:`vllm_filter`, sampler :func:`vllm_sampler`): vLLM's PyTorch path, the one its
  sampler takes without FlashInfer and Triton: ``Sampler.apply_temperature``, the min-p logits processor's
  ``MinPLogitsProcessor.apply``, then ``apply_top_k_top_p_pytorch`` (with ``allow_cpu_sync=True``, as vLLM calls
  it on CPU, so a top-k-only batch goes through ``apply_top_k_only``), in vLLM's order (min-p, top-k, top-p:
  :data:`VLLM_ORDER`). Top-k outside ``(0, V)`` is stored as ``V`` and a batch without it passes ``k=None``, as
  ``InputBatch`` does; temperature 0 is vLLM's greedy branch (``argmax``). The sampler adds ``forward_native``'s
  float32 softmax and ``random_sample`` (exponential-race), with torch's global generator seeded by ``seed``
  (requests without their own seed).
* ``sglang`` (torch; filter :func:`sglang_filter`, sampler :func:`sglang_sampler`): SGLang's torch-native
  ``top_k_top_p_min_p_sampling_from_probs_torch`` (the ``pytorch`` sampling backend) after its
  ``logits.div_(temperatures)`` and softmax. The filter asks it for ``return_filtered_probs=True`` and reads back
  the tokens whose filtered weight is non-zero; the sampler calls it as SGLang's sampler does (``max_top_k``, no
  per-request seed: ``torch.multinomial`` with torch's global generator seeded by ``seed``). SGLang's own
  parameter normalisation is applied: top-k ``<= 0`` is ``TOP_K_ALL`` (``-1`` in its API), temperature below
  ``1e-6`` is greedy (``argmax``). Its order is the kit's default (top-k, top-p, min-p).
* ``vllm-triton`` (torch, filter :func:`vllm_triton_filter`): vLLM's CUDA path, the same temperature and min-p
  functions, then ``apply_top_k_top_p_triton`` (its pivot-based Triton top-k/top-p kernels, which
  ``apply_top_k_top_p`` takes whenever Triton is installed), imported as vLLM imports it. CUDA only.
* ``flashinfer`` (torch, sampler :func:`flashinfer_sampler`): ``flashinfer.sampling.top_k_top_p_sampling_from_logits``
  on CUDA (after temperature; min-p through ``top_k_renorm_probs``/``top_p_renorm_probs`` then
  ``min_p_sampling_from_probs``). FlashInfer's kernels are CUDA-only: without a GPU the adapter raises
  :class:`~parity.ConformanceError` saying so.

vLLM and SGLang pin other torch versions (2.14) and pull their whole serving stacks into ``import vllm.v1...``
(config, platforms, distributed, psutil, zmq, aiohttp, ...), so their functions are loaded from the **installed
package's own source file** (:func:`engine_function`): the named definitions are compiled from that file, with
its file name, into a namespace holding torch. Install them without dependencies so torch stays pinned:
``pip install --no-deps vllm==0.33.0 sglang==0.5.23``.

>>> sorted(ENGINES)
['flashinfer', 'llamacpp', 'sglang', 'vllm', 'vllm-triton']
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import functools
import importlib.metadata
import importlib.util
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from parity._exceptions import ConformanceError
from parity._optional import import_optional
from parity.sampling import DEFAULT_ORDER, LLAMACPP_ORDER, VLLM_ORDER

__all__ = [
    "ENGINES",
    "Engine",
    "engine_function",
    "engine_versions",
    "flashinfer_sampler",
    "llamacpp_filter",
    "llamacpp_sampler",
    "require_cuda",
    "sglang_filter",
    "sglang_sampler",
    "vllm_filter",
    "vllm_sampler",
    "vllm_triton_filter",
]


# ------------------------------------------------------------------------------------------ loading engine source


def _source_file(distribution: str, package: str, relative: str) -> Path:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError as err:
        raise ConformanceError(
            f"{distribution} is not installed; install it without its dependencies so torch stays pinned: "
            f"pip install --no-deps {distribution}"
        ) from err
    spec = importlib.util.find_spec(package)  # a top-level package: its __init__ is not executed
    if spec is None or not spec.submodule_search_locations:
        raise ConformanceError(f"cannot locate the {package!r} package of {distribution}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise ConformanceError(f"{distribution} {importlib.metadata.version(distribution)} has no {relative}")
    return path


@functools.cache
def engine_function(distribution: str, package: str, relative: str, names: tuple[str, ...]) -> dict[str, Any]:
    """Compile the definitions ``names`` (``"func"``, ``"Class.method"``, ``"CONSTANT"``) of an installed file.

    The engine's own text is compiled under its own file name (tracebacks point into the engine), decorators
    dropped (``staticmethod``, ``torch.compile``), into a namespace with ``torch`` and ``typing``'s names.
    Raises :class:`ConformanceError` when the package or a definition is missing.
    """
    torch = import_optional("torch", extra="torch")
    path = _source_file(distribution, package, relative)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    found[f"{node.name}.{item.name}"] = item
    body: list[ast.stmt] = []
    for name in names:
        if name not in found:
            version = importlib.metadata.version(distribution)
            raise ConformanceError(f"{distribution} {version}: {relative} has no {name!r} (the adapter needs it)")
        node = found[name]
        if isinstance(node, ast.FunctionDef):
            node.decorator_list = []
            node.name = name.replace(".", "__")
        body.append(node)
    namespace: dict[str, Any] = {"torch": torch, "nn": torch.nn, **{n: getattr(typing, n) for n in typing.__all__}}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), namespace)
    return {name: namespace[name.replace(".", "__")] for name in names}


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------------------------------- llama.cpp


_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])


@functools.cache
def _llama() -> Any:
    llama_cpp = import_optional("llama_cpp", extra="engines")
    if ctypes.sizeof(llama_cpp.llama_token_data) != _TOKEN_DATA.itemsize:
        raise ConformanceError(
            f"llama-cpp-python {_version('llama-cpp-python')}: llama_token_data is "
            f"{ctypes.sizeof(llama_cpp.llama_token_data)} bytes, the adapter expects {{id, logit, p}} (12 bytes)"
        )
    llama_cpp.llama_backend_init()
    return llama_cpp


def _llamacpp_chain(
    llama_cpp: Any, temperature: float, top_k: int, top_p: float, min_p: float, seed: int | None
) -> Any:
    """llama-cpp-python's ``Llama._init_sampler`` chain (no penalties, no typical-p), ``dist`` only for a sampler."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if seed is not None and temperature == 0.0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(int(top_k)))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(float(top_p), 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_min_p(float(min_p), 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(float(temperature)))
    if seed is not None:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


def _llamacpp_run(
    logits: Any, temperature: float, top_k: int, top_p: float, min_p: float, seed: int | None
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    llama_cpp = _llama()
    x = np.asarray(logits, dtype=np.float32)
    batch, vocab = x.shape
    out = np.full(x.shape, -np.inf, dtype=np.float32)
    chosen = np.full(batch, -1, dtype=np.int64)
    chain = _llamacpp_chain(llama_cpp, temperature, top_k, top_p, min_p, seed)
    try:
        for r in range(batch):
            cells = np.empty(vocab, dtype=_TOKEN_DATA)
            cells["id"] = np.arange(vocab, dtype=np.int32)
            cells["logit"] = x[r]
            cells["p"] = 0.0
            arr = llama_cpp.llama_token_data_array(
                data=cells.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
                size=vocab,
                selected=-1,
                sorted=False,
            )
            llama_cpp.llama_sampler_apply(chain, ctypes.byref(arr))
            size = int(arr.size)
            address = ctypes.cast(arr.data, ctypes.c_void_p).value or 0
            if size and not address:
                raise ConformanceError("llama.cpp left a null candidate array")
            raw = ctypes.string_at(address, size * _TOKEN_DATA.itemsize) if size else b""
            kept = np.frombuffer(raw, dtype=_TOKEN_DATA)
            if size and (kept["id"].min() < 0 or kept["id"].max() >= vocab):
                raise ConformanceError(f"llama.cpp left a token id outside [0, {vocab}) in the candidates")
            out[r, kept["id"]] = kept["logit"]
            if seed is not None and 0 <= int(arr.selected) < size:
                chosen[r] = int(kept["id"][int(arr.selected)])
    finally:
        llama_cpp.llama_sampler_free(chain)
    return out, chosen


def llamacpp_filter(
    logits: Any, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> NDArray[np.float32]:
    """llama.cpp's top-k, top-p, min-p and temperature samplers in its default order; the candidates left."""
    return _llamacpp_run(logits, temperature, top_k, top_p, min_p, None)[0]


def llamacpp_sampler(
    logits: Any, *, seed: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> NDArray[np.int64]:
    """llama.cpp's full chain with its ``dist`` sampler seeded by ``seed`` (``greedy`` at temperature 0)."""
    return _llamacpp_run(logits, temperature, top_k, top_p, min_p, seed)[1]


# -------------------------------------------------------------------------------------------------------- vLLM


def _vllm() -> dict[str, Any]:
    ops = engine_function(
        "vllm",
        "vllm",
        "v1/sample/ops/topk_topp_sampler.py",
        (
            "apply_top_k_top_p_pytorch",
            "apply_top_k_only",
            "random_sample",
            "empty_exponential_noise_like",
            "sample_with_exponential_noise",
        ),
    )
    sampler = engine_function("vllm", "vllm", "v1/sample/sampler.py", ("_SAMPLING_EPS", "Sampler.apply_temperature"))
    minp = engine_function("vllm", "vllm", "v1/sample/logits_processor/builtin.py", ("MinPLogitsProcessor.apply",))
    return {**ops, **sampler, **minp}


@dataclass
class _MinPState:
    """The two attributes ``MinPLogitsProcessor.apply`` reads (``update_state`` fills them in vLLM)."""

    min_p: Any
    min_p_count: int


def _vllm_logits(logits: Any, temperature: float, top_k: int, top_p: float, min_p: float) -> Any:
    torch = import_optional("torch", extra="torch")
    fns = _vllm()
    batch, vocab = logits.shape
    logits = logits.clone()
    if temperature < fns["_SAMPLING_EPS"]:  # all_greedy: Sampler.greedy_sample is argmax
        best = logits.argmax(dim=-1, keepdim=True)
        return torch.full_like(logits, float("-inf")).scatter(-1, best, logits.gather(-1, best))
    temp = torch.full((batch,), float(temperature), dtype=torch.float32)
    logits = fns["Sampler.apply_temperature"](logits, temp, True)
    state = _MinPState(torch.full((batch, 1), float(min_p), dtype=torch.float32), batch if min_p > 0.0 else 0)
    logits = fns["MinPLogitsProcessor.apply"](state, logits)
    k = None
    if 0 < top_k < vocab:  # InputBatch stores top_k outside (0, V) as V; no top-k request: k is None
        k = torch.full((batch,), int(top_k), dtype=torch.int32)
    p = torch.full((batch,), float(top_p), dtype=torch.float32) if top_p < 1.0 else None
    return fns["apply_top_k_top_p_pytorch"](logits, k, p, allow_cpu_sync=True)


def vllm_filter(
    logits: Any, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> Any:
    """vLLM's temperature, min-p processor and PyTorch top-k/top-p (torch tensors in and out)."""
    return _vllm_logits(logits, temperature, top_k, top_p, min_p)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """torch's global generator seeded with ``seed`` inside, restored after (an engine request without a seed)."""
    torch = import_optional("torch", extra="torch")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def vllm_sampler(
    logits: Any, *, seed: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> Any:
    """vLLM's filter, then ``forward_native``: float32 softmax and ``random_sample`` (global generator)."""
    filtered = _vllm_logits(logits, temperature, top_k, top_p, min_p)
    if temperature < _vllm()["_SAMPLING_EPS"]:
        return filtered.argmax(dim=-1)
    torch = import_optional("torch", extra="torch")
    with _seeded(seed):
        probs = filtered.softmax(dim=-1, dtype=torch.float32)
        return _vllm()["random_sample"](probs, {})


def _vllm_triton() -> Any:
    """vLLM's Triton top-k/top-p module, imported as vLLM imports it (its kernels need the package's JIT helpers)."""
    require_cuda("vllm-triton")
    _source_file("vllm", "vllm", "v1/sample/ops/topk_topp_triton.py")  # a clear error when vLLM is missing
    try:
        import vllm.v1.sample.ops.topk_topp_triton as module  # type: ignore[import-not-found, unused-ignore]
    except ImportError as err:
        raise ConformanceError(
            f"vllm {_version('vllm')}: its Triton sampler module does not import here ({err}); it needs triton "
            "and vLLM's own light dependencies (psutil, pyzmq)"
        ) from err
    return module


def vllm_triton_filter(
    logits: Any, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> Any:
    """vLLM's CUDA path: its temperature and min-p processor, then ``apply_top_k_top_p_triton`` on the GPU.

    ``Sampler.forward_native`` -> ``apply_top_k_top_p`` takes the Triton kernels whenever Triton is installed
    (FlashInfer's sampler only when it is installed and enabled), so this is what a vLLM server on a CUDA GPU
    without FlashInfer applies to every request's logits.
    """
    torch = import_optional("torch", extra="torch")
    triton_ops = _vllm_triton()
    fns = _vllm()
    x = logits.to("cuda", dtype=torch.float32)
    batch, vocab = x.shape
    if temperature < fns["_SAMPLING_EPS"]:
        return _vllm_logits(logits, temperature, top_k, top_p, min_p)
    temp = torch.full((batch,), float(temperature), dtype=torch.float32, device="cuda")
    x = fns["Sampler.apply_temperature"](x, temp, True)
    state = _MinPState(
        torch.full((batch, 1), float(min_p), dtype=torch.float32, device="cuda"), batch if min_p > 0.0 else 0
    )
    x = fns["MinPLogitsProcessor.apply"](state, x)
    k = torch.full((batch,), int(top_k), dtype=torch.int32, device="cuda") if 0 < top_k < vocab else None
    p = torch.full((batch,), float(top_p), dtype=torch.float32, device="cuda") if top_p < 1.0 else None
    if k is None and p is None:
        return x.cpu()
    out = triton_ops.apply_top_k_top_p_triton(x.contiguous(), k, p, has_topp_only_rows=k is None)
    return out.cpu()


# ------------------------------------------------------------------------------------------------------ SGLang

_SGLANG_TOP_K_ALL = 1 << 30


def _sglang() -> dict[str, Any]:
    return engine_function(
        "sglang", "sglang", "srt/layers/sampler.py", ("top_k_top_p_min_p_sampling_from_probs_torch",)
    )


def _sglang_inputs(logits: Any, temperature: float, top_k: int, top_p: float, min_p: float) -> tuple[Any, ...]:
    torch = import_optional("torch", extra="torch")
    batch = logits.shape[0]
    k = int(top_k) if top_k > 0 else _SGLANG_TOP_K_ALL  # SamplingParams: -1 (disabled) becomes TOP_K_ALL
    logits = logits.clone().div_(torch.full((batch, 1), float(temperature), dtype=torch.float32))
    probs = torch.softmax(logits, dim=-1)
    top_ks = torch.full((batch,), k, dtype=torch.int32)
    top_ps = torch.full((batch,), float(top_p), dtype=torch.float32)
    min_ps = torch.full((batch,), float(min_p), dtype=torch.float32)
    positions = torch.zeros(batch, dtype=torch.int64)
    return logits, probs, top_ks, top_ps, min_ps, positions, k


def _sglang_greedy(logits: Any, temperature: float) -> bool:
    return bool(0.0 <= temperature < 1e-6)  # SamplingParams.normalize: greedy is top_k = 1 and argmax


def sglang_filter(
    logits: Any, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> Any:
    """SGLang's torch-native top-k/top-p/min-p after temperature and softmax; tokens of non-zero weight kept."""
    torch = import_optional("torch", extra="torch")
    if _sglang_greedy(logits, temperature):
        best = logits.argmax(dim=-1, keepdim=True)
        return torch.full_like(logits, float("-inf")).scatter(-1, best, logits.gather(-1, best))
    scaled, probs, top_ks, top_ps, min_ps, positions, _ = _sglang_inputs(logits, temperature, top_k, top_p, min_p)
    fn = _sglang()["top_k_top_p_min_p_sampling_from_probs_torch"]
    with _seeded(0):
        _, weights, token_ids, _ = fn(
            probs, top_ks, top_ps, min_ps, min_p > 0.0, None, positions, return_filtered_probs=True
        )
    kept = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, token_ids.long(), weights > 0)
    return torch.where(kept, scaled, torch.full_like(scaled, float("-inf")))


def sglang_sampler(
    logits: Any, *, seed: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> Any:
    """SGLang's torch-native sampling as its sampler calls it (``max_top_k``; multinomial, global generator)."""
    if _sglang_greedy(logits, temperature):
        return logits.argmax(dim=-1)
    _, probs, top_ks, top_ps, min_ps, positions, k = _sglang_inputs(logits, temperature, top_k, top_p, min_p)
    fn = _sglang()["top_k_top_p_min_p_sampling_from_probs_torch"]
    with _seeded(seed):
        return fn(probs, top_ks, top_ps, min_ps, min_p > 0.0, None, positions, max_top_k=k)


# -------------------------------------------------------------------------------------------------- FlashInfer


def require_cuda(name: str) -> None:
    """Raise :class:`ConformanceError` saying why when the engine ``name`` needs CUDA and none is here."""
    torch = import_optional("torch", extra="torch")
    if not torch.cuda.is_available():
        raise ConformanceError(
            f"builtin:{name} needs a CUDA GPU: its kernels run on CUDA only "
            "(torch.cuda.is_available() is False on this machine); run it on a GPU machine"
        )


def flashinfer_sampler(
    logits: Any, *, seed: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> Any:
    """FlashInfer's ``top_k_top_p_sampling_from_logits`` on CUDA (min-p via renorm + ``min_p_sampling_from_probs``)."""
    torch = import_optional("torch", extra="torch")
    require_cuda("flashinfer")
    flashinfer = import_optional("flashinfer", extra="engines")
    x = logits.to("cuda", dtype=torch.float32)
    if temperature == 0.0:
        return x.argmax(dim=-1).cpu()
    x = x / float(temperature)
    vocab = x.shape[1]
    k = int(top_k) if 0 < top_k < vocab else vocab
    generator = torch.Generator(device="cuda").manual_seed(seed)
    sampling = flashinfer.sampling
    if min_p <= 0.0:
        ids = sampling.top_k_top_p_sampling_from_logits(x, k, float(top_p), deterministic=True, generator=generator)
    else:
        probs = torch.softmax(x, dim=-1)
        probs = sampling.top_k_renorm_probs(probs, k) if k < vocab else probs
        probs = sampling.top_p_renorm_probs(probs, float(top_p)) if top_p < 1.0 else probs
        ids = sampling.min_p_sampling_from_probs(probs, float(min_p), deterministic=True, generator=generator)
    return ids.view(-1).long().cpu()


# ----------------------------------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class Engine:
    """One engine's adapters: its filter and sampler (either may be absent), framework, order, distributions."""

    name: str
    filter: Callable[..., Any] | None
    sampler: Callable[..., Any] | None
    framework: str
    order: tuple[str, ...]
    distributions: tuple[str, ...]
    entry_points: str
    needs_cuda: bool = False
    #: Called once when the target is loaded: raises :class:`ConformanceError` naming what is missing, so a run
    #: stops before its first check instead of failing every check on the same import error.
    preflight: Callable[[], object] | None = None

    def describe(self) -> str:
        versions = ", ".join(f"{d} {_version(d)}" for d in self.distributions)
        return f"builtin:{self.name} ({versions}; order {','.join(self.order)}): {self.entry_points}"


#: The engines by builtin name.
ENGINES: dict[str, Engine] = {
    "llamacpp": Engine(
        "llamacpp",
        llamacpp_filter,
        llamacpp_sampler,
        "numpy",
        LLAMACPP_ORDER,
        ("llama-cpp-python",),
        "llama_sampler_init_top_k/top_p/min_p/temp(/dist) chain, llama_sampler_apply",
    ),
    "vllm": Engine(
        "vllm",
        vllm_filter,
        vllm_sampler,
        "torch",
        VLLM_ORDER,
        ("vllm",),
        "Sampler.apply_temperature, MinPLogitsProcessor.apply, apply_top_k_top_p_pytorch (+ random_sample)",
    ),
    "sglang": Engine(
        "sglang",
        sglang_filter,
        sglang_sampler,
        "torch",
        DEFAULT_ORDER,
        ("sglang",),
        "top_k_top_p_min_p_sampling_from_probs_torch",
    ),
    "vllm-triton": Engine(
        "vllm-triton",
        vllm_triton_filter,
        None,
        "torch",
        VLLM_ORDER,
        ("vllm", "triton"),
        "Sampler.apply_temperature, MinPLogitsProcessor.apply, apply_top_k_top_p_triton (CUDA only)",
        needs_cuda=True,
        preflight=_vllm_triton,
    ),
    "flashinfer": Engine(
        "flashinfer",
        None,
        flashinfer_sampler,
        "torch",
        DEFAULT_ORDER,
        ("flashinfer-python",),
        "flashinfer.sampling.top_k_top_p_sampling_from_logits (CUDA only)",
        needs_cuda=True,
    ),
}


def engine_versions(names: Sequence[str] | None = None) -> dict[str, str]:
    """The installed version of each engine's distribution ("not installed" when absent).

    >>> "llamacpp" in engine_versions()
    True
    """
    return {n: ", ".join(_version(d) for d in ENGINES[n].distributions) for n in (names or list(ENGINES))}
