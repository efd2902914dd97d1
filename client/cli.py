"""The `taas` command. The client's commands (datasets, jobs, models, predict) are always there; the server's (serve,
api, db, keys, weights: app/cli.py) and the worker's (worker: worker/cli.py) join when their packages and
dependencies are installed, so a client-only install (`pip install '.[client]'`) has a working `taas` that imports
no server code."""

import importlib
import importlib.util

import typer

from client.commands import datasets_cli, jobs_cli, models_cli, predict

cli = typer.Typer(help="taas: training as a service", no_args_is_help=True, add_completion=False)
cli.add_typer(datasets_cli, name="datasets")
cli.add_typer(jobs_cli, name="jobs")
cli.add_typer(models_cli, name="models")
cli.command("predict")(predict)

# Each module has register(cli), and joins where the package its commands need is installed (the API's extra brings
# fastapi, the worker's torch). Looked up by name, never imported statically: the client depends on no server.
SERVER_COMMANDS = {"app.cli": "fastapi", "worker.cli": "torch"}


def _add_server_commands() -> None:
    for name, needs in SERVER_COMMANDS.items():
        if importlib.util.find_spec(name.split(".")[0]) and importlib.util.find_spec(needs):
            importlib.import_module(name).register(cli)


_add_server_commands()


def main() -> None:
    """Entry point."""
    cli()


if __name__ == "__main__":
    main()
