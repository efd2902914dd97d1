"""The server's commands (serve, api, db, keys, weights): run the service, embedded or split, and administer it.
They join the `taas` command (client/cli.py) wherever the API's dependencies are installed; `python -m app.cli`
runs them alone."""

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import typer

from app.config import get_settings

cli = typer.Typer(help="taas server commands", no_args_is_help=True, add_completion=False)
db_cli = typer.Typer(help="Database commands", no_args_is_help=True)
keys_cli = typer.Typer(help="API keys", no_args_is_help=True)
weights_cli = typer.Typer(help="Pretrained base weights", no_args_is_help=True)


def _prepare() -> None:
    s = get_settings()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    from app.migrate import upgrade

    upgrade()


@db_cli.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Migrate the database to the latest schema."""
    get_settings().data_dir.mkdir(parents=True, exist_ok=True)
    from app.migrate import upgrade

    upgrade(revision=revision)
    typer.echo(f"database at {revision}")


@keys_cli.command("create")
def keys_create(tenant: str = typer.Option(..., help="Tenant the key belongs to"),
                scopes: str = typer.Option("read,write", help="Comma-separated: read, write, admin"),
                name: str | None = None) -> None:
    """Create an API key and print its secret once."""
    from app.db import get_sessionmaker
    from app.keys.service import create_key

    with get_sessionmaker()() as session:
        row, plaintext = create_key(session=session, tenant=tenant, scopes=scopes.split(","), name=name)
    typer.echo(f"created {row.id} for tenant {row.tenant} with scopes {','.join(row.scopes)}")
    typer.echo(plaintext)


@weights_cli.command("import")
def weights_import(arch: str, file: Path | None = typer.Option(None, "--file", help="A trusted checkpoint")) -> None:
    """Convert trusted pretrained weights to safetensors and register them as ARCH's imagenet weights."""
    from app.basemodels.service import imagenet_weights, register_file
    from app.db import get_sessionmaker

    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / "weights.safetensors"
        # The conversion loads a checkpoint with torch, which only the worker package imports: it runs there, in
        # a process of its own, and this side registers the safetensors file it wrote.
        convert = [sys.executable, "-m", "worker.cli", "convert-weights", arch, str(dst)]
        done = subprocess.run([*convert, *(["--file", str(file)] if file else [])], capture_output=True, text=True)
        if done.returncode:
            why = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
            if "No module named" in why[0]:
                why = [f"{why[0]}: converting weights needs the worker's packages (pip install '.[worker]')"]
            typer.echo(f"{arch}: {why[0]}", err=True)
            raise typer.Exit(1)
        sha = done.stdout.split()[-1]  # convert-weights prints the sha256 of the file it wrote
        with get_sessionmaker()() as session:
            existing = imagenet_weights(session=session, arch=arch)
            if existing is not None and existing.sha256 == sha:
                typer.echo(f"{arch}: imagenet weights already imported as {existing.id}")
                return
            row = register_file(session=session, arch=arch, src=dst, source="imagenet", tenant=None,
                                name=f"{arch} imagenet")
    typer.echo(f"{arch}: imported imagenet weights as {row.id} (sha256 {row.sha256[:12]}…)")


@cli.command("api")
def api(host: str | None = None, port: int | None = None, workers: int = 1) -> None:
    """Run the HTTP API (uvicorn), logging JSON; with several workers, metrics are summed across them."""
    import uvicorn

    s = get_settings()
    with tempfile.TemporaryDirectory(prefix="taas-metrics-") as tmp:
        if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # prometheus-client's multiprocess mode: each worker process writes its samples here, and a scrape
            # of any of them sums all. Set before a worker imports prometheus_client; a fresh folder per run.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tmp
        from app.observability import log_config

        uvicorn.run("app.main:create_app", factory=True, host=host or s.host, port=port or s.port,
                    workers=workers, log_level=s.log_level.lower(), access_log=False,
                    log_config=log_config(s.log_level, s.log_format))


def _ensure_dev_key() -> None:
    from app.db import get_sessionmaker
    from app.keys.service import create_key

    path = get_settings().data_dir / "dev-key"
    if path.exists():
        typer.echo(f"development key: in {path}")
        return
    with get_sessionmaker()() as session:
        _, plaintext = create_key(session=session, tenant="dev", scopes=["admin"], name="development key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(plaintext + "\n")
    typer.echo(f"development key (admin, tenant 'dev'), shown once and kept in {path}:\n{plaintext}")


@cli.command("serve")
def serve() -> None:
    """The embedded default: API, one worker and the reaper, SQLite and a filesystem broker."""
    s = get_settings()
    _prepare()
    _ensure_dev_key()
    env = {**os.environ, "TAAS_DATA_DIR": str(s.data_dir.resolve()),
           "TAAS_WORKER_TOKEN": s.secret("worker_token"), "TAAS_SECRET_KEY": s.secret("secret_key"),
           "TAAS_API_URL": f"http://{s.host}:{s.port}"}
    procs = [subprocess.Popen([sys.executable, "-m", "app.cli", "api"], env={**env, "TAAS_RUN_REAPER": "1"}),
             subprocess.Popen([sys.executable, "-m", "worker.cli", "run"], env=env)]
    typer.echo(f"taas serving on http://{s.host}:{s.port} (data in {s.data_dir.resolve()})")

    asked = []

    def stop(*_: object) -> None:
        asked.append(True)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        while all(p.poll() is None for p in procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                procs[0].wait(timeout=1)
        # A stop we were asked for is a clean exit; a child that died by itself is not.
        code = 0 if asked else next((abs(p.returncode) or 1 for p in procs if p.poll() is not None), 1)
        if not asked:
            typer.echo(f"a taas process exited ({[p.returncode for p in procs]}); stopping", err=True)
    finally:
        stop()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    raise typer.Exit(code)


def register(root: typer.Typer) -> None:
    """Add the server's commands to the `taas` command."""
    root.add_typer(db_cli, name="db")
    root.add_typer(keys_cli, name="keys")
    root.add_typer(weights_cli, name="weights")
    for command in (api, serve):
        root.command(command.__name__)(command)


cli.add_typer(db_cli, name="db")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(weights_cli, name="weights")

if __name__ == "__main__":
    cli()
