"""The `taas` command. The client's commands (datasets, jobs, models, predict) are always there; the server's (serve,
api, db, keys, weights: app/cli.py) and the worker's (worker: worker/cli.py) join when their packages and
dependencies are installed, so a client-only install (`pip install '.[client]'`) has a working `taas` that imports
no server code."""

import importlib

import typer

from client.commands import datasets_cli, jobs_cli, models_cli, predict

cli = typer.Typer(help="taas: training as a service", no_args_is_help=True, add_completion=False)
cli.add_typer(datasets_cli, name="datasets")
cli.add_typer(jobs_cli, name="jobs")
cli.add_typer(models_cli, name="models")
cli.command("predict")(predict)

# Each module has register(cli). Looked up by name, never imported statically: the client depends on no server.
SERVER_COMMANDS = ("app.cli", "worker.cli")
PROJECT = ("app", "worker", "core", "client")


def _add_server_commands() -> None:
    for name in SERVER_COMMANDS:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            if (exc.name or "").split(".")[0] in PROJECT and exc.name != name.split(".")[0]:
                raise  # a broken import inside the project, not a missing optional install
            continue
        module.register(cli)


_add_server_commands()


def main() -> None:
    """Entry point."""
    cli()


if __name__ == "__main__":
    main()
