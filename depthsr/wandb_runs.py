"""W&B for the commands: whether to log offline, and `depthsr compare`'s tables and plot as a run."""
from __future__ import annotations

import configparser
import csv
import netrc
import os
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse


def wandb_host() -> str:
    """The W&B server this process would log to: WANDB_BASE_URL, else the one `wandb login --host` saved."""
    url = os.environ.get("WANDB_BASE_URL")
    if not url:
        settings = Path(os.environ.get("WANDB_CONFIG_DIR") or Path.home() / ".config" / "wandb") / "settings"
        parser = configparser.ConfigParser()
        try:
            parser.read(settings)
            url = parser.get("default", "base_url", fallback="")
        except (configparser.Error, OSError):
            url = ""
    return urlparse(url or "https://api.wandb.ai").hostname or "api.wandb.ai"


def _has_credentials() -> bool:
    """Whether an API key or a login to the W&B server (wandb.ai's, or a self-hosted one named by WANDB_BASE_URL or
    `wandb login --host`) is present."""
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        has_login = path.is_file() and netrc.netrc(str(path)).authenticators(wandb_host()) is not None
    except (netrc.NetrcParseError, OSError):
        has_login = False
    return bool(os.environ.get("WANDB_API_KEY")) or has_login


def wandb_online() -> bool:
    """Whether W&B runs of this process log online: WANDB_MODE when set, else whether there are credentials."""
    mode = os.environ.get("WANDB_MODE")
    return _has_credentials() if mode is None else mode not in ("offline", "dryrun", "disabled")


def offline_without_key() -> None:
    """W&B runs offline (sync later) unless WANDB_MODE says otherwise or credentials are present."""
    if "WANDB_MODE" not in os.environ and not _has_credentials():
        os.environ["WANDB_MODE"] = "offline"


def _column(values: list[str]) -> list:
    """A CSV column as numbers when every non-empty cell is one (empty cells: None), else as text."""
    for kind in (int, float):
        try:
            return [kind(v) if v != "" else None for v in values]
        except ValueError:
            pass
    return values


def _table(path: Path):
    import wandb

    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    columns = [_column(list(col)) for col in zip(*rows)] if rows else [[] for _ in header]
    return wandb.Table(columns=header, data=[list(row) for row in zip(*columns)])


def log_compare(out: Path, project: str, config: dict) -> None:
    """One W&B run (job type `compare`) holding results.csv and per_image.csv as tables and the RMSE-vs-scale
    plot, written under `out`/wandb."""
    import wandb

    offline_without_key()
    datasets = ",".join(sorted({r["dataset"] for r in csv.DictReader(open(out / "results.csv", newline=""))}))
    run = wandb.init(project=project, job_type="compare", group="compare", dir=str(out.resolve()), config=config,
                     name=f"compare {datasets} {datetime.now():%Y-%m-%d %H:%M:%S}",
                     settings=wandb.Settings(silent=True))
    try:
        run.log({"compare/results": _table(out / "results.csv"), "compare/per_image": _table(out / "per_image.csv"),
                 "compare/rmse_vs_scale": wandb.Image(str(out / "rmse_vs_scale.png"))})
        where = run.url or f"offline, {run.dir} (wandb sync later)"
    finally:
        run.finish()
    print(f"logged to W&B project {project}: run {run.name} ({where})")


def training_run(checkpoint: str | Path) -> dict | None:
    """The W&B run (id, name, group, project) a Lightning checkpoint (.ckpt) of `depthsr fit` records, if any
    (exported model files record none)."""
    from depthsr.methods.torch_file import read_torch_file

    if Path(checkpoint).suffix != ".ckpt":
        return None
    ckpt = read_torch_file(checkpoint)
    run = ckpt.get("wandb_run") if isinstance(ckpt, dict) else None
    return run if isinstance(run, dict) and run.get("id") else None


def log_export(model_file: Path, trained_by: dict) -> None:
    """The exported model file and its sha256 record as a W&B model artifact, logged by a run of job type
    `export` in the project and group of the run that trained it (`trained_by`: the checkpoint's `wandb_run`)."""
    import wandb

    run = wandb.init(project=trained_by.get("project") or "depthsr", group=trained_by.get("group") or None,
                     job_type="export", name=f"export {model_file.name}", dir=str(model_file.resolve().parent),
                     config={"exports_run": trained_by}, settings=wandb.Settings(silent=True))
    try:
        artifact = wandb.Artifact(model_file.stem, type="model", metadata={"trained_by": trained_by})
        artifact.add_file(str(model_file))
        artifact.add_file(str(model_file.with_name(model_file.name + ".sha256")))
        run.log_artifact(artifact)
    finally:
        run.finish()
