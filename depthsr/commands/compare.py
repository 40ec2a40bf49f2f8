"""`depthsr compare`: RMSE per method x scale x data set under one stated protocol, as CSV, Markdown and a plot."""
from __future__ import annotations

import argparse
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset
from tqdm import tqdm

from depthsr.checkpoint import resolve_method
from depthsr.data.degrade import PROTOCOLS
from depthsr.data.folder import FolderDataset, read_meta
from depthsr.data.io import atomic_write
from depthsr.data.middlebury import middlebury_dataset
from depthsr.data.nyu import NUM_TRAIN, NYU_BORDER, NYUv2Dataset, check_nyu_file
from depthsr.errors import DepthSRError

COLUMNS = ["method", "dataset", "scale", "protocol", "units", "images", "rmse", "mae"]


@dataclass
class DataSpec:
    name: str
    open: Callable[[int], Dataset]  # scale -> data set
    border: int


def parse_data(spec: str) -> list[DataSpec]:
    """'nyu:PATH.mat', 'middlebury:DIR' or 'folder:DIR' (a set, or a folder of sets) -> data sets."""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in ("nyu", "middlebury", "folder"):
        raise DepthSRError(f"--data {spec!r}: expected nyu:PATH.mat, middlebury:DIR or folder:DIR")
    root = Path(path)
    if kind == "nyu":
        total = check_nyu_file(root)
        indices = range(NUM_TRAIN, total) if total > NUM_TRAIN else range(total)
        return [DataSpec("nyu", lambda s: NYUv2Dataset(root, indices), NYU_BORDER)]
    if kind == "middlebury":
        return [DataSpec(root.name, lambda s: middlebury_dataset(root, s), 0)]
    if not root.is_dir():
        raise DepthSRError(f"{root}: no such folder")
    if (root / "meta.json").is_file() or any((p / "rgb.png").is_file() for p in root.iterdir()):
        return [DataSpec(root.name, lambda s: FolderDataset(root, s), 0)]
    sets = [p for p in sorted(root.iterdir()) if (p / "meta.json").is_file()]
    if not sets:
        raise DepthSRError(f"{root}: neither an RGB-D folder set nor a folder of sets (no meta.json found)")
    specs = []
    for p in sets:
        if read_meta(p).get("role") == "train":
            print(f"skipping {p.name}: marked role 'train' (not for evaluation)")
            continue
        specs.append(DataSpec(p.name, lambda s, p=p: FolderDataset(p, s), 0))
    return specs


def markdown(rows: list[dict], protocol: str, norm: str, notes: list[str]) -> str:
    """One table per data set: rows = methods, columns = scales, 'RMSE (MAE)'."""
    out = io.StringIO()
    out.write(f"# depthsr compare\n\nprotocol: {protocol}, normalisation: {norm} "
              f"(RMSE = mean of per-image RMSE; MAE in brackets)\n")
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        sub = [r for r in rows if r["dataset"] == dataset]
        scales = sorted({r["scale"] for r in sub})
        methods = list(dict.fromkeys(r["method"] for r in sub))
        cell = {(r["method"], r["scale"]): r for r in sub}
        out.write(f"\n## {dataset} ({sub[0]['units']}, {sub[0]['images']} images, protocol {protocol})\n\n")
        out.write("| method | " + " | ".join(f"x{s}" for s in scales) + " |\n")
        out.write("|---|" + "---|" * len(scales) + "\n")
        for m in methods:
            out.write(f"| {m} | " + " | ".join(
                f"{cell[m, s]['rmse']:.3f} ({cell[m, s]['mae']:.3f})" if (m, s) in cell else "-" for s in scales)
                + " |\n")
        if "bicubic" in methods:
            for m in methods:
                if m == "bicubic":
                    continue
                gains = [f"{100 * (1 - cell[m, s]['rmse'] / cell['bicubic', s]['rmse']):+.1f}% at x{s}"
                         for s in scales if (m, s) in cell and cell["bicubic", s]["rmse"] > 0]
                out.write(f"\n{m} vs bicubic (RMSE reduction): {', '.join(gains)}")
            out.write("\n")
    if notes:
        out.write("\nNotes:\n" + "".join(f"- {n}\n" for n in notes))
    return out.getvalue()


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def plot(rows: list[dict], path: Path) -> None:
    """RMSE against scale, one line per method, one panel per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        sub = [r for r in rows if r["dataset"] == dataset]
        for m in dict.fromkeys(r["method"] for r in sub):
            pts = sorted((r["scale"], r["rmse"]) for r in sub if r["method"] == m)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["scale"] for r in sub}), [f"x{s}" for s in sorted({r["scale"] for r in sub})])
        ax.set_title(dataset)
        ax.set_xlabel("scale")
        ax.set_ylabel(f"RMSE ({sub[0]['units']})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from depthsr.evaluate import evaluate  # torchmetrics: imported only when this command runs

    specs = [d for spec in args.data for d in parse_data(spec)]
    names = [m for group in args.methods for m in group.split(",") if m]
    methods = [resolve_method(m) for m in names]
    out = Path(args.out)
    rows, image_rows, notes = [], [], []
    for method, label in zip(methods, names):
        if method.scales is not None:
            for s in args.scales:
                if s not in method.scales:
                    notes.append(f"{label} was trained for x{'/x'.join(map(str, method.scales))}; "
                                 f"its x{s} numbers are for a scale it was not trained for")
    for note in notes:
        print(f"note: {note}")
    datasets = [(spec, {s: spec.open(s) for s in args.scales}) for spec in specs]
    total = sum(min(len(ds), args.limit or len(ds)) for _, per in datasets for ds in per.values()) * len(methods)
    with tqdm(total=total, desc="compare", unit="img", disable=args.quiet) as bar:
        for spec, per_scale in datasets:
            for scale in args.scales:
                for method, label in zip(methods, names):
                    res = evaluate(method, per_scale[scale], scale, args.protocol, args.norm, spec.border,
                                           args.noise, args.limit, bar)
                    row = {"method": label, "dataset": spec.name, "scale": scale, "protocol": args.protocol,
                           "units": res.units, "images": res.images, "rmse": round(res.rmse, 6),
                           "mae": round(res.mae, 6), "rmse_pooled": round(res.rmse_pooled, 6),
                           "delta1": round(res.delta1, 6)}
                    rows.append(row)
                    image_rows += [{**{k: row[k] for k in ("method", "dataset", "scale", "protocol", "units")}, **r}
                                   for r in res.per_image]
    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / "results.csv", _csv(rows, COLUMNS))
    _write_text(out / "per_image.csv", _csv(image_rows, ["method", "dataset", "scale", "protocol", "units",
                                                         "image", "rmse", "mae", "pixels"]))
    table = markdown(rows, args.protocol, args.norm, notes)
    _write_text(out / "results.md", table)
    plot(rows, out / "rmse_vs_scale.png")
    print(table)
    print(f"wrote {out}/results.csv, results.md, per_image.csv, rmse_vs_scale.png")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="RMSE table: methods x scales x data sets")
    p.add_argument("--data", action="append", required=True,
                   help="nyu:PATH.mat | middlebury:DIR | folder:DIR (repeatable)")
    p.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--methods", action="append", required=True,
                   help="comma-separated: bicubic, jbu, guided, default, or checkpoint paths (repeatable)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="bicubic")
    p.add_argument("--norm", choices=("lr", "gt"), default="lr",
                   help="network input normalisation: LR min-max (default) or ground truth's (as papers)")
    p.add_argument("--noise", type=float, default=0.01, help="noise level of the noisy protocol")
    p.add_argument("--limit", type=int, default=None, help="at most this many images per data set")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
