"""The worker's commands: `taas worker` (a Celery training worker) and the conversion of trusted weights to
safetensors, which needs torch and so runs here (`taas weights import`, on the API side, calls it as
`python -m worker.cli convert-weights` and registers the file it writes)."""

import os
import sys
from pathlib import Path

import typer

EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}
commands = typer.Typer(help="taas worker commands", no_args_is_help=True, add_completion=False)


def run(ctx: typer.Context, concurrency: int = 1) -> None:
    """Run a Celery training worker (extra arguments go to celery)."""
    args = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--loglevel=INFO",
            f"--concurrency={concurrency}", "--without-gossip", "--without-mingle", *ctx.args]
    os.execv(sys.executable, args)


def convert_weights(arch: str, out: Path,
                    file: Path | None = typer.Option(None, "--file", help="A trusted checkpoint")) -> None:
    """Convert ARCH's trusted pretrained checkpoint (the published file by default) to safetensors at OUT."""
    from worker.training.weights_import import convert_to_safetensors

    try:
        sha = convert_to_safetensors(arch, file, out)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(sha)


commands.command("run", context_settings=EXTRA_ARGS)(run)
commands.command("convert-weights")(convert_weights)


def register(cli: typer.Typer) -> None:
    """Add `taas worker` to the `taas` command."""
    cli.command("worker", context_settings=EXTRA_ARGS)(run)


if __name__ == "__main__":
    commands()
