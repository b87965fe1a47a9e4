"""Training of the lab model from a fixed seed: corpus -> tokenizer -> AdamW with a cosine schedule -> weights.

The run is reproducible from its :class:`TrainConfig` (seed included) on the same machine and torch build: the
corpus order, the tokenizer, the initial weights and every batch are derived from the seed. Every
``export_every_s`` seconds (and at the end) the best checkpoint so far, by validation loss, is exported to the
output directory as fp16 safetensors with ``config.json`` and ``tokenizer.json``, so a long run in the
background always leaves loadable weights behind. Progress goes to ``on_progress`` and, as JSON lines, to
``log_path``.

>>> TrainConfig(max_steps=0)
Traceback (most recent call last):
...
parity._exceptions.InvalidInputError: `max_steps` must be >= 1, got 0
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from parity._exceptions import InvalidInputError
from parity._optional import import_optional
from parity.lab._corpus import END_OF_TEXT, SOURCES, corpus_documents, is_validation
from parity.lab.model import ModelConfig, Transformer
from parity.lab.tokenizer import VOCAB_SIZE, Tokenizer, train_tokenizer

#: model id written into config.json and reported by the engine.
MODEL_ID = "parity-lab-9m"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (the model's shape included)."""

    seed: int = 0
    max_steps: int = 3000
    batch_size: int = 8
    seq_len: int = 512
    lr: float = 1.5e-3
    min_lr: float = 1.5e-4
    warmup_steps: int = 60
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_windows: int = 24
    decay_steps: int = 200
    decay_start: int | None = None
    stop_step: int | None = None
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "seq_len", "eval_every", "eval_windows"):
            if getattr(self, name) < 1:
                raise InvalidInputError(name, "must be >= 1", getattr(self, name))
        if self.seq_len > self.model.max_context:
            raise InvalidInputError("seq_len", f"must be <= the model's max_context {self.model.max_context}")
        if not 0 < self.min_lr <= self.lr:
            raise InvalidInputError("lr", "must be >= min_lr > 0", self.lr)
        if not 1 <= self.decay_steps <= self.max_steps:
            raise InvalidInputError("decay_steps", f"must be in [1, max_steps={self.max_steps}]", self.decay_steps)
        if self.decay_start is not None and not self.warmup_steps <= self.decay_start <= self.max_steps:
            raise InvalidInputError("decay_start", f"must be in [warmup_steps, max_steps={self.max_steps}]")
        if self.stop_step is not None and not 1 <= self.stop_step <= self.total_steps:
            raise InvalidInputError("stop_step", f"must be in [1, {self.total_steps}]", self.stop_step)

    @property
    def decay_from(self) -> int:
        """The step where the learning rate starts to decay (default: ``max_steps - decay_steps``)."""
        return self.max_steps - self.decay_steps if self.decay_start is None else self.decay_start

    @property
    def total_steps(self) -> int:
        """Steps of the whole schedule: warm-up, constant, then ``decay_steps`` of decay."""
        return self.decay_from + self.decay_steps

    def learning_rate(self, step: int) -> float:
        """Warm-up-stable-decay: linear warm-up, constant ``lr``, then a cosine decay to ``min_lr``.

        A time-limited run starts the decay early (at ``decay_start``) so that it still ends annealed; the
        schedule stays a pure function of the config, so the run is reproducible from its flags.
        """
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if step < self.decay_from:
            return self.lr
        progress = min(1.0, (step - self.decay_from) / self.decay_steps)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))


def reproduce_command(config: TrainConfig) -> str:
    """The ``parity lab train`` command line that reruns ``config`` (default batch, length and rates assumed)."""
    parts = ["parity lab train", f"--seed {config.seed}", f"--max-steps {config.max_steps}"]
    if config.decay_start is not None:
        parts.append(f"--decay-start {config.decay_start}")
    if config.stop_step is not None:
        parts.append(f"--stop-step {config.stop_step}")
    return " ".join(parts)


@dataclass(frozen=True)
class TrainProgress:
    """One progress report: the step just finished and the latest losses (nats per token)."""

    step: int
    max_steps: int
    train_loss: float
    val_loss: float | None
    best_val_loss: float
    tokens_seen: int
    elapsed_s: float


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    steps: int
    final_train_loss: float
    final_val_loss: float
    best_val_loss: float
    best_step: int
    tokens_seen: int
    elapsed_s: float
    train_tokens: int
    val_tokens: int
    parameters: int
    out_dir: Path
    stopped_early: bool
    reproduce: str


@dataclass
class PreparedData:
    """The tokenizer and the token streams of both splits."""

    tokenizer: Tokenizer
    train_ids: np.ndarray
    val_ids: np.ndarray


def prepare_data(*, seed: int, vocab_size: int = VOCAB_SIZE) -> PreparedData:
    """Build the corpus, train the tokenizer on its training split and tokenize both splits.

    Documents are shuffled with ``seed`` and joined with ``<|endoftext|>``.
    """
    docs = corpus_documents()
    random.Random(seed).shuffle(docs)
    train_docs = [d.text for d in docs if not is_validation(d.key)]
    val_docs = [d.text for d in docs if is_validation(d.key)]
    tokenizer = train_tokenizer(iter(train_docs), vocab_size=vocab_size)
    eot = tokenizer.special_id(END_OF_TEXT)

    def stream(texts: list[str]) -> np.ndarray:
        ids: list[int] = []
        for start in range(0, len(texts), 512):
            for encoded in tokenizer.encode_batch(texts[start : start + 512]):
                ids.extend(encoded)
                ids.append(eot)
        return np.asarray(ids, dtype=np.uint16)

    return PreparedData(tokenizer=tokenizer, train_ids=stream(train_docs), val_ids=stream(val_docs))


def export_weights(
    model: Transformer, tokenizer: Tokenizer, out_dir: Path, *, metadata: dict[str, Any] | None = None
) -> None:
    """Write ``model.safetensors`` (fp16), ``config.json`` and ``tokenizer.json`` to ``out_dir`` atomically."""
    safetensors_torch = import_optional("safetensors.torch", extra="lab")
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to(torch.float16).contiguous() for name, t in model.state_dict().items()}
    config = {"model_id": MODEL_ID, "architecture": "llama", **model.config.to_dict(), **(metadata or {})}
    tmp = out_dir / "model.safetensors.tmp"
    safetensors_torch.save_file(tensors, str(tmp), metadata={"format": "pt", "model_id": MODEL_ID})
    tmp.chmod(0o644)
    tmp.replace(out_dir / "model.safetensors")
    tokenizer.save(out_dir / "tokenizer.json.tmp")
    (out_dir / "tokenizer.json.tmp").replace(out_dir / "tokenizer.json")
    (out_dir / "config.json.tmp").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out_dir / "config.json.tmp").replace(out_dir / "config.json")


def _val_windows(val_ids: np.ndarray, count: int, seq_len: int) -> torch.Tensor:
    span = seq_len + 1
    if len(val_ids) < span:
        raise InvalidInputError("val_ids", f"must hold at least {span} tokens", len(val_ids))
    starts = np.linspace(0, len(val_ids) - span, count).astype(np.int64)
    return torch.from_numpy(np.stack([val_ids[s : s + span].astype(np.int64) for s in starts]))


def evaluate(model: Callable[[torch.Tensor], torch.Tensor], windows: torch.Tensor, *, batch_size: int = 8) -> float:
    """Mean next-token cross-entropy (nats) of ``model`` over ``windows`` [N, seq_len + 1]."""
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            chunk = windows[start : start + batch_size]
            logits = model(chunk[:, :-1]).float()
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1), reduction="sum")
            total += float(loss)
            count += chunk[:, 1:].numel()
    return total / count


def train(
    config: TrainConfig,
    *,
    out_dir: Path,
    log_path: Path | None = None,
    export_every_s: float = 600.0,
    compile_model: bool = True,
    threads: int = 2,
    time_limit_s: float | None = None,
    on_progress: Callable[[TrainProgress], None] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train the lab model per ``config`` and export the best checkpoint to ``out_dir``.

    The first evaluated checkpoint is exported at once, later ones every ``export_every_s``. With
    ``time_limit_s`` the run stops after the first evaluation past that many seconds; the result's ``steps``
    then says how to reproduce it (``TrainConfig(stop_step=steps)`` gives the same weights).
    """
    torch.set_num_threads(threads)
    began = time.monotonic()
    say = on_message or (lambda message: None)
    log = log_path.open("a", encoding="utf-8") if log_path is not None else None

    def record(event: dict[str, Any]) -> None:
        if log is not None:
            log.write(json.dumps({"time": time.time(), **event}) + "\n")
            log.flush()

    record({"event": "start", "config": {**config.__dict__, "model": config.model.to_dict()}})
    say("building the corpus and training the tokenizer")
    data = prepare_data(seed=config.seed, vocab_size=config.model.vocab_size)
    record({"event": "data", "train_tokens": len(data.train_ids), "val_tokens": len(data.val_ids)})
    say(f"corpus: {len(data.train_ids):,} training tokens, {len(data.val_ids):,} validation tokens")

    torch.manual_seed(config.seed)
    model = Transformer(config.model)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.95),
    )
    forward: Callable[[torch.Tensor], torch.Tensor] = torch.compile(model) if compile_model else model
    windows = _val_windows(data.val_ids, config.eval_windows, config.seq_len)
    train_ids = torch.from_numpy(data.train_ids.astype(np.int64))
    gen = torch.Generator().manual_seed(config.seed)
    span = config.seq_len + 1
    last_step = config.stop_step or config.total_steps
    recent: deque[float] = deque(maxlen=100)

    best_val, best_step, val_loss = float("inf"), 0, float("nan")
    best_state: dict[str, torch.Tensor] | None = None
    exported_step, last_export = -1, time.monotonic()
    train_loss = float("nan")
    tokens = 0

    def export(step: int) -> None:
        nonlocal exported_step, last_export
        last_export = time.monotonic()
        if best_state is None or best_step == exported_step:
            return
        snapshot = Transformer(config.model)
        snapshot.load_state_dict(best_state)
        meta = {
            "step": best_step,
            "val_loss": round(best_val, 4),
            "seed": config.seed,
            "max_steps": config.max_steps,
            "decay_start": config.decay_from,
            "reproduce": reproduce_command(config),
        }
        export_weights(snapshot, data.tokenizer, out_dir, metadata=meta)
        exported_step = best_step
        record({"event": "export", "step": best_step, "val_loss": best_val})
        say(f"exported step {best_step} (val loss {best_val:.3f}) to {out_dir}")

    step = 0
    while step < last_step:
        step += 1
        recent.append(time.monotonic())
        lr = config.learning_rate(step - 1)
        for group in optimizer.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, len(train_ids) - span, (config.batch_size,), generator=gen)
        batch = torch.stack([train_ids[s : s + span] for s in starts.tolist()])
        logits = forward(batch[:, :-1]).float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        train_loss = float(loss.detach())
        tokens += config.batch_size * config.seq_len
        evaluated: float | None = None
        if step % config.eval_every == 0 or step == last_step:
            evaluated = val_loss = evaluate(forward, windows)  # no dropout: no eval()/train() switch (recompiles)
            if val_loss < best_val:
                best_val, best_step = val_loss, step
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            record({"event": "eval", "step": step, "lr": lr, "train_loss": train_loss, "val_loss": val_loss})
        elif step % 10 == 0:
            record({"event": "step", "step": step, "lr": lr, "train_loss": train_loss})
        if on_progress is not None:
            elapsed = time.monotonic() - began
            on_progress(TrainProgress(step, last_step, train_loss, evaluated, best_val, tokens, elapsed))
        if time_limit_s is not None and config.decay_start is None and config.stop_step is None and len(recent) > 20:
            # Start the decay early when the remaining time only just fits it, so a time-limited run ends annealed.
            per_step = (recent[-1] - recent[0]) / (len(recent) - 1)
            remaining = time_limit_s - (time.monotonic() - began)
            if (
                step >= config.warmup_steps
                and step < config.decay_from
                and remaining <= 1.1 * per_step * config.decay_steps
            ):
                config = replace(config, decay_start=step)
                last_step = config.total_steps
                record({"event": "decay", "step": step, "reproduce": reproduce_command(config)})
                say(f"starting the learning-rate decay at step {step}: {reproduce_command(config)}")
        if evaluated is not None and time_limit_s is not None and time.monotonic() - began >= time_limit_s:
            config = replace(config, stop_step=step)
            last_step = step
            break
        if (exported_step < 0 and best_state is not None) or time.monotonic() - last_export >= export_every_s:
            export(step)
    export(last_step)
    elapsed = time.monotonic() - began
    result = TrainResult(
        steps=last_step,
        final_train_loss=train_loss,
        final_val_loss=val_loss,
        best_val_loss=best_val,
        best_step=best_step,
        tokens_seen=tokens,
        elapsed_s=elapsed,
        train_tokens=len(data.train_ids),
        val_tokens=len(data.val_ids),
        parameters=model.num_parameters(),
        out_dir=out_dir,
        stopped_early=last_step < config.total_steps,
        reproduce=reproduce_command(config),
    )
    record({"event": "done", **{k: str(v) if isinstance(v, Path) else v for k, v in result.__dict__.items()}})
    if log is not None:
        log.close()
    return result


__all__ = ["MODEL_ID", "SOURCES", "TrainConfig", "TrainProgress", "TrainResult", "export_weights", "train"]
