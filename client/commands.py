"""`taas datasets|jobs|models|predict`: the API from a terminal, on client.sdk, with rich progress and tables.

Data (tables, ids, results) goes to stdout; progress bars and the live log of a job go to stderr."""

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from client.sdk import APIError, Client, TaasError

datasets_cli = typer.Typer(help="Datasets: upload, list, show (an API client)", no_args_is_help=True)
jobs_cli = typer.Typer(help="Fine-tuning jobs: create, watch, list, show, cancel (an API client)",
                       no_args_is_help=True)
models_cli = typer.Typer(help="Models: list, show, download (an API client)", no_args_is_help=True)

ApiUrl = Annotated[str, typer.Option("--api-url", envvar="TAAS_API_URL", help="The taas API")]
ApiKey = Annotated[str, typer.Option("--api-key", envvar="TAAS_API_KEY", show_default=False,
                                     help="An API key (taas keys create, or data/dev-key)")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table")]
DEFAULT_URL = "http://127.0.0.1:8000"
EXIT = {"succeeded": 0, "failed": 1, "cancelled": 2}  # `jobs watch` and `jobs create --wait`


def _out() -> Console:
    return Console(highlight=False)  # made per call: it binds to the current stdout (and its width)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


@contextmanager
def _api(url: str, key: str) -> Iterator[Client]:
    """A client; API and connection errors become one readable line and exit status 1."""
    try:
        with Client(url, key) as taas:
            yield taas
    except APIError as exc:
        _err().print(f"[red]error[/red] {exc.status} {exc.code}: {exc.message}")
        for e in exc.details.get("errors", []):
            _err().print(f"  {'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}")
        raise typer.Exit(1) from None
    except httpx.TransportError as exc:
        _err().print(f"[red]error[/red] cannot reach the API at {url}: {exc}")
        raise typer.Exit(1) from None
    except TaasError as exc:
        _err().print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from None


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _when(timestamp: str | None) -> str:
    return timestamp[:16].replace("T", " ") if timestamp else "-"


NUMERIC = {"images", "classes", "bytes", "epoch", "val acc", "accuracy", "trainable", "frozen", "learning rate",
           "from epoch", "probability"}


def _table(title: str | None, columns: tuple[str, ...], rows: Iterable[Sequence[str] | None]) -> Table:
    """A table; a None row starts a new section. Ids and digests are never cut: they are there to be copied."""
    rows = list(rows)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, c in enumerate(columns):
        keep = c in ("id", "sha256")
        table.add_column(c, no_wrap=True, overflow="fold" if keep else "ellipsis",
                         min_width=max((len(r[i]) for r in rows if r), default=0) if keep else None,
                         justify="right" if c in NUMERIC else "left")
    for row in rows:
        if row is None:
            table.add_section()
        else:
            table.add_row(*row)
    return table


def _fields(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=box.SIMPLE, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for k, v in rows.items():
        table.add_row(k, _fmt(v))
    return table


def _byte_progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    console=_err())


# datasets

def _show_dataset(ds: dict[str, Any]) -> None:
    out = _out()
    splits = " · ".join(f"{k} {v}" for k, v in (ds.get("splits") or {}).items())
    out.print(_fields(f"dataset {ds['id']}", {"name": ds["name"], "status": ds["status"], "images": ds["num_images"],
                                             "bytes": ds["bytes"], "sha256": ds["sha256"], "splits": splits or None}))
    if ds.get("error"):
        out.print(f"[red]{ds['error']['code']}[/red]: {ds['error']['message']}")
    counts = ds.get("class_counts") or {}
    if counts:
        out.print(_table(f"{len(counts)} classes", ("class", "images"),
                         ((name, _fmt(counts.get(name, 0))) for name in ds.get("classes") or sorted(counts))))


@datasets_cli.command("upload")
def datasets_upload(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A zip or tar archive")],
                    api_url: ApiUrl = DEFAULT_URL, api_key: ApiKey = ..., name: str | None = None,
                    wait: Annotated[bool, typer.Option(help="Wait for validation and print its summary")] = True,
                    as_json: AsJson = False) -> None:
    """Upload an archive of class/image folders with a progress bar, then show the validation summary."""
    with _api(api_url, api_key) as taas:
        with _byte_progress() as bar:
            task = bar.add_task(f"upload {path.name}", total=path.stat().st_size)
            ds = taas.datasets.upload(path, name=name, progress=lambda done, _: bar.update(task, completed=done))
        _err().print(f"uploaded {ds['id']}, {ds['status']}")
        if wait:
            with _err().status(f"validating {ds['id']}: decoding images and splitting"):
                ds = taas.datasets.wait(ds["id"])
        if as_json:
            _print_json(ds)
        else:
            _show_dataset(ds)
        if ds["status"] == "failed":
            raise typer.Exit(1)


@datasets_cli.command("ls")
def datasets_ls(api_url: ApiUrl = DEFAULT_URL, api_key: ApiKey = ..., limit: int = 20,
                as_json: AsJson = False) -> None:
    """List datasets, newest first."""
    with _api(api_url, api_key) as taas:
        page = taas.datasets.list(limit=limit)
    if as_json:
        return _print_json(page)
    _out().print(_table(None, ("id", "name", "status", "images", "classes", "created"), (
        (d["id"], d["name"], d["status"], _fmt(d["num_images"]), str(len(d.get("classes") or [])),
         _when(d["created_at"])) for d in page["data"])))


@datasets_cli.command("show")
def datasets_show(dataset_id: str, api_url: ApiUrl = DEFAULT_URL, api_key: ApiKey = ...,
                  as_json: AsJson = False) -> None:
    """A dataset: status, classes and their counts, splits."""
    with _api(api_url, api_key) as taas:
        ds = taas.datasets.get(dataset_id)
    if as_json:
        return _print_json(ds)
    _show_dataset(ds)


# jobs

def _spec(base: dict[str, Any], **flags: Any) -> dict[str, Any]:
    """The spec file (if any) with the given flags laid over it; unset flags keep the server's defaults."""
    spec = json.loads(json.dumps(base))
    paths = {"arch": ("base_model", "arch"), "weights": ("base_model", "weights"), "policy": ("freeze", "policy"),
             "until": ("freeze", "until")}
    for name, value in flags.items():
        if value is None:
            continue
        if name == "dataset":
            spec["dataset_id"] = value
            continue
        section, key = paths.get(name, ("hyperparameters", name))
        spec.setdefault(section, {})[key] = value
    return spec


def _watch(taas: Client, job_id: str) -> None:
    """Follow a job live until it finishes; exit 0 on success, 1 on failure, 2 when cancelled."""
    job = taas.jobs.get(job_id)
    err = _err()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("epochs {task.fields[stats]}"), TimeElapsedColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(job["status"], total=job["progress"]["epochs"],
                            completed=job["progress"]["epoch"], stats="")
        for ev in taas.jobs.watch(job_id):
            data = ev.get("data") or {}
            if ev["type"] == "metrics":
                stats = (f"loss {_fmt(data.get('train_loss'))} acc {_fmt(data.get('train_accuracy'), 3)} · "
                         f"val loss {_fmt(data.get('val_loss'))} acc {_fmt(data.get('val_accuracy'), 3)}")
                bar.update(task, completed=data["epoch"], stats=stats)
                bar.console.print(f"epoch {data['epoch']}/{job['progress']['epochs']}: {stats}")
            elif ev["type"] == "status":
                to, message = str(data.get("to")), ev.get("message") or ""
                bar.update(task, description=to)
                bar.console.print(message if to in message else f"{to}: {message}")
            else:
                bar.console.print(ev.get("message") or "")
    job = taas.jobs.get(job_id)
    if job["status"] == "succeeded":
        typer.echo(f"{job_id} succeeded: model {job['model_id']}")
    elif job["error"]:
        typer.echo(f"{job_id} {job['status']}: {job['error']['code']}: {job['error']['message']}")
    else:
        typer.echo(f"{job_id} {job['status']}")
    raise typer.Exit(EXIT.get(job["status"], 1))


@jobs_cli.command("create")
def jobs_create(dataset: Annotated[str, typer.Option(help="A ready dataset's id")],
                api_url: ApiUrl = DEFAULT_URL, api_key: ApiKey = ...,
                arch: Annotated[str | None, typer.Option(help="e.g. efficientnet_lite0, resnet18")] = None,
                weights: Annotated[str | None, typer.Option(help="imagenet, none, bm_…, model_…")] = None,
                policy: Annotated[str | None, typer.Option(help="head_only, until, none, gradual, lp_ft")] = None,
                until: Annotated[str | None, typer.Option(help="With --policy until: the last frozen group")] = None,
                epochs: int | None = None, batch_size: int | None = None,
                learning_rate: Annotated[float | None, typer.Option("--learning-rate", "--lr")] = None,
                image_size: int | None = None, optimizer: str | None = None, scheduler: str | None = None,
                augment: str | None = None, seed: int | None = None,
                spec_file: Annotated[Path | None, typer.Option("--spec", exists=True, dir_okay=False,
                                                               help="A JSON spec; the flags override it")] = None,
                dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan, queue nothing")] = False,
                wait: Annotated[bool, typer.Option("--wait", help="Watch the job until it finishes")] = False,
                idempotency_key: str | None = None, as_json: AsJson = False) -> None:
    """Submit a fine-tuning job (DESIGN.md's spec); unset options take the server's defaults."""
    spec = _spec(json.loads(spec_file.read_text()) if spec_file else {}, dataset=dataset, arch=arch,
                 weights=weights, policy=policy, until=until, epochs=epochs, batch_size=batch_size,
                 learning_rate=learning_rate, image_size=image_size, optimizer=optimizer, scheduler=scheduler,
                 augment=augment, seed=seed)
    with _api(api_url, api_key) as taas:
        job = taas.jobs.create(spec, dry_run=dry_run, idempotency_key=idempotency_key)
        if as_json:
            _print_json(job)
        elif dry_run:
            plan = job["plan"]
            _out().print(_table(
                f"plan: {plan['trainable_params']:,} trainable, {plan['frozen_params']:,} frozen",
                ("block group", "trainable", "frozen", "learning rate", "from epoch"),
                ((g["name"], _fmt(g["trainable_params"]), _fmt(g["frozen_params"]), f"{g['learning_rate']:g}",
                  _fmt(g["trainable_from_epoch"])) for g in plan["block_groups"])))
        else:
            typer.echo(job["id"])
        if wait and not dry_run:
            _watch(taas, job["id"])


@jobs_cli.command("watch")
def jobs_watch(job_id: str, api_url: ApiUrl = DEFAULT_URL, api_key: ApiKey = ...) -> None:
    """Follow a job live (epochs, loss, accuracy); exit 0 when it succeeds, 1 when it fails, 2 if cancelled."""
    with _api(api_url, api_key) as taas:
        _watch(taas, job_id)


@jobs_cli.command("ls")
def jobs_ls(api_url: ApiUrl = DEFAULT_URL, api_key: ApiKey = ..., status: str | None = None, limit: int = 20,
            as_json: AsJson = False) -> None:
    """List jobs, newest first."""
    with _api(api_url, api_key) as taas:
        page = taas.jobs.list(status=status, limit=limit)
    if as_json:
        return _print_json(page)
    _out().print(_table(None, ("id", "status", "arch", "policy", "epoch", "val acc", "created"), (
        (j["id"], j["status"], j["spec"]["base_model"]["arch"], j["spec"]["freeze"]["policy"],
         f"{j['progress']['epoch']}/{j['progress']['epochs']}",
         _fmt((j.get("latest_metrics") or {}).get("val_accuracy"), 3), _when(j["created_at"]))
        for j in page["data"])))


@jobs_cli.command("show")
def jobs_show(job_id: str, api_url: ApiUrl = DEFAULT_URL, api_key: ApiKey = ..., as_json: AsJson = False) -> None:
    """A job: status, progress, latest metrics, model or error."""
    with _api(api_url, api_key) as taas:
        job = taas.jobs.get(job_id)
    if as_json:
        return _print_json(job)
    error = f"{job['error']['code']}: {job['error']['message']}" if job["error"] else None
    _out().print(_fields(f"job {job['id']}", {
        "status": job["status"], "dataset": job["dataset_id"], "arch": job["spec"]["base_model"]["arch"],
        "policy": job["spec"]["freeze"]["policy"], "epoch": f"{job['progress']['epoch']}/{job['progress']['epochs']}",
        "attempt": job["attempt"], **{k: v for k, v in (job["latest_metrics"] or {}).items() if k != "epoch"},
        "model": job["model_id"], "error": error, "created": _when(job["created_at"]),
        "finished": _when(job["finished_at"])}))


@jobs_cli.command("cancel")
def jobs_cancel(job_id: str, api_url: ApiUrl = DEFAULT_URL, api_key: ApiKey = ...) -> None:
    """Cancel a job: queued ones at once, running ones at the worker's next step."""
    with _api(api_url, api_key) as taas:
        job = taas.jobs.cancel(job_id)
    pending = job["status"] == "running"
    typer.echo(f"{job_id} {'cancellation requested' if pending else job['status']}")


# models

@models_cli.command("ls")
def models_ls(api_url: ApiUrl = DEFAULT_URL, api_key: ApiKey = ..., limit: int = 20, as_json: AsJson = False) -> None:
    """List models, newest first."""
    with _api(api_url, api_key) as taas:
        page = taas.models.list(limit=limit)
    if as_json:
        return _print_json(page)
    _out().print(_table(None, ("id", "arch", "classes", "accuracy", "formats", "created"), (
        (m["id"], m["arch"], str(len(m["classes"])),
         _fmt(m["metrics"].get("test_accuracy", m["metrics"].get("val_accuracy")), 3),
         ",".join(a["format"] for a in m["artifacts"]), _when(m["created_at"])) for m in page["data"])))


@models_cli.command("show")
def models_show(model_id: str, api_url: ApiUrl = DEFAULT_URL, api_key: ApiKey = ...,
                as_json: AsJson = False) -> None:
    """A model: metrics, classes, lineage and artifacts."""
    with _api(api_url, api_key) as taas:
        m = taas.models.get(model_id)
    if as_json:
        return _print_json(m)
    metrics = {k: v for k, v in m["metrics"].items() if not isinstance(v, dict | list)}
    out = _out()
    out.print(_fields(f"model {m['id']}", {"arch": m["arch"], "job": m["job_id"], "dataset": m["dataset_id"],
                                           "classes": ", ".join(m["classes"]), **metrics,
                                           "created": _when(m["created_at"])}))
    out.print(_table("artifacts", ("format", "bytes", "sha256"),
                     ((a["format"], _fmt(a["bytes"]), a["sha256"]) for a in m["artifacts"])))


@models_cli.command("download")
def models_download(model_id: str, api_url: ApiUrl = DEFAULT_URL, api_key: ApiKey = ...,
                    fmt: Annotated[str, typer.Option("--format", help="safetensors, onnx or config")] = "safetensors",
                    output: Annotated[Path | None, typer.Option("--output", "-o", help="Default: ID.EXT")] = None
                    ) -> None:
    """Download an artifact with a progress bar; its sha256 is checked against the API's."""
    dest = output or Path(f"{model_id}.{'json' if fmt == 'config' else fmt}")
    with _api(api_url, api_key) as taas, _byte_progress() as bar:
        task = bar.add_task(f"{fmt} of {model_id}", total=None)
        sha = taas.models.download(model_id, fmt, dest,
                                   progress=lambda done, total: bar.update(task, completed=done, total=total))
    typer.echo(f"wrote {dest} ({dest.stat().st_size:,} bytes, sha256 {sha}, verified)")


def predict(model: Annotated[str, typer.Argument(help="A model id or an alias")],
            images: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Image files")],
            api_url: ApiUrl = DEFAULT_URL, api_key: ApiKey = ...,
            top_k: Annotated[int | None, typer.Option(help="Labels per image (the API's default: 5)")] = None,
            as_json: AsJson = False) -> None:
    """Classify images with a model (its ONNX artifact, run by the API): the top labels of each."""
    with _api(api_url, api_key) as taas:
        result = taas.models.predict(taas.models.resolve(model), images, top_k=top_k)
    if as_json:
        return _print_json(result)
    typer.echo(f"model {result['model_id']} (onnx {result.get('onnx_sha256', '')[:12]})")
    rows: list[tuple[str, str, str] | None] = []
    for image in result["data"]:
        rows += [(image["file"] if i == 0 else "", p["label"], f"{p['probability']:.4f}")
                 for i, p in enumerate(image["predictions"])]
        rows.append(None)
    _out().print(_table(None, ("image", "label", "probability"), rows[:-1]))
