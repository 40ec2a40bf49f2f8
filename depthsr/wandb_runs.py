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


def offline_without_key() -> None:
    """W&B runs offline (sync later) unless an API key or a login to its server (wandb.ai's, or a self-hosted
    one named by WANDB_BASE_URL or `wandb login --host`) is present."""
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        has_login = path.is_file() and netrc.netrc(str(path)).authenticators(wandb_host()) is not None
    except (netrc.NetrcParseError, OSError):
        has_login = False
    if "WANDB_MODE" not in os.environ and not os.environ.get("WANDB_API_KEY") and not has_login:
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
