"""``parity lab train``: train the lab model from a fixed seed (and ``parity lab export-gguf``).

The ``parity lab`` group registers :data:`command` (``train``) and :data:`export_gguf` (``export-gguf``). The
module also runs on its own: ``python -m parity.cli.lab_train --seed 0 --out DIR``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from parity._exceptions import ParityError


@click.command(name="train")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of corpus order, init and batches.")
@click.option("--max-steps", type=int, default=3000, show_default=True, help="Steps unless the decay starts early.")
@click.option("--decay-start", type=int, default=None, help="Step where the decay starts (default max-steps - 200).")
@click.option("--stop-step", type=int, default=None, help="Stop at this step (reproduces a time-limited run).")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--seq-len", type=int, default=512, show_default=True)
@click.option("--lr", type=float, default=1.5e-3, show_default=True, help="Peak learning rate.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("lab-weights"),
    show_default=True,
    help="Where the best checkpoint is exported (the committed weights live in src/parity/lab/weights).",
)
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="JSONL log.")
@click.option("--export-every", type=float, default=600.0, show_default=True, help="Seconds between exports.")
@click.option("--time-limit", type=float, default=None, help="Stop at the first evaluation after this many seconds.")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--compile/--no-compile", "compile_model", default=True, show_default=True, help="torch.compile.")
def command(
    seed: int,
    max_steps: int,
    decay_start: int | None,
    stop_step: int | None,
    batch_size: int,
    seq_len: int,
    lr: float,
    out_dir: Path,
    log_path: Path | None,
    export_every: float,
    time_limit: float | None,
    threads: int,
    compile_model: bool,
) -> None:
    """Train the lab model from a fixed seed and export the best checkpoint (fp16 safetensors)."""
    from parity.lab.train import TrainConfig, TrainProgress, train

    console = Console(stderr=True)
    config = TrainConfig(
        seed=seed,
        max_steps=max_steps,
        decay_start=decay_start,
        stop_step=stop_step,
        batch_size=batch_size,
        seq_len=seq_len,
        lr=lr,
        min_lr=lr / 10,
    )
    with Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[losses]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("train", total=config.stop_step or config.total_steps, losses="")

        def on_progress(p: TrainProgress) -> None:
            val = f" val {p.val_loss:.3f}" if p.val_loss is not None else ""
            progress.update(
                task,
                completed=p.step,
                total=p.max_steps,
                losses=f"loss {p.train_loss:.3f}{val} best {p.best_val_loss:.3f}",
            )

        result = train(
            config,
            out_dir=out_dir,
            log_path=log_path,
            export_every_s=export_every,
            compile_model=compile_model,
            threads=threads,
            time_limit_s=time_limit,
            on_progress=on_progress,
            on_message=progress.console.print,
        )
    summary = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()}
    for key, value in summary.items():
        click.echo(f"{key}: {value}")


@click.command(name="export-gguf")
@click.argument("out_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--weights", "weights_dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--quantization", type=click.Choice(["f16", "q8_0", "q4_0"]), default="f16", show_default=True)
@click.option("--rope-scaling", type=float, default=1.0, show_default=True, help="Linear RoPE interpolation factor.")
def export_gguf(out_path: Path, weights_dir: Path | None, quantization: str, rope_scaling: float) -> None:
    """Export the lab weights (default: the committed ones) as a GGUF llama model for llama.cpp."""
    from parity.lab.gguf_export import Quantization
    from parity.lab.gguf_export import export_gguf as export

    kind: Quantization = quantization  # type: ignore[assignment]  # click.Choice checked it
    written = export(out_path, weights_dir=weights_dir, quantization=kind, rope_scaling=rope_scaling)
    click.echo(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB, {quantization})")


if __name__ == "__main__":
    try:
        command()
    except ParityError as err:
        raise SystemExit(f"parity: error: {err}") from err
