"""`depthsr compare`: RMSE per method x ratio x data set under one stated protocol, as CSV, Markdown and a plot.

Ratios need not be whole (`--scales 2.5 4 7.5 8 16`); protocol `real` takes each pair's measured `lr_xS`
input, or its `lr` input at whatever ratio the sensor has. For every method and ratio the number of images on
which it is worse than bicubic (higher per-image RMSE) is counted, so bicubic is always evaluated.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
from pathlib import Path

from tqdm import tqdm

from depthsr.data.degrade import PROTOCOLS
from depthsr.data.folder import lr_stem
from depthsr.data.io import atomic_write, check_writable
from depthsr.data.sets import EvalSet, parse_data
from depthsr.errors import DepthSRError
from depthsr.methods.method import resolve_device
from depthsr.methods.network import resolve_method

COLUMNS = ["method", "dataset", "scale", "protocol", "units", "images", "rmse", "mae", "worse_than_bicubic"]
IMAGE_COLUMNS = ["method", "dataset", "scale", "protocol", "units", "image", "rmse", "mae", "pixels"]
MAX_RATIO = 64.0
REFERENCE = "bicubic"


def label(ratio: float) -> str:
    """How a ratio is written in tables and CSVs: 4, 2.5, 2.667."""
    return f"{float(f'{ratio:.4g}'):g}"


def worse_than_reference(image_rows: list[dict]) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(method, dataset, scale) -> (images with a higher per-image RMSE than bicubic, images compared), from
    the per-image rows."""
    reference = {(r["dataset"], r["scale"], r["image"]): r["rmse"] for r in image_rows if r["method"] == REFERENCE}
    counts: dict[tuple[str, str, str], tuple[int, int]] = {}
    for r in image_rows:
        if r["method"] == REFERENCE or (r["dataset"], r["scale"], r["image"]) not in reference:
            continue
        bicubic = reference[r["dataset"], r["scale"], r["image"]]
        worse, total = counts.get((r["method"], r["dataset"], r["scale"]), (0, 0))
        counts[r["method"], r["dataset"], r["scale"]] = (worse + (r["rmse"] > bicubic * (1 + 1e-9)), total + 1)
    return counts


def markdown(rows: list[dict], protocol: str, norm: str, notes: list[str]) -> str:
    """One table per data set: rows = methods, columns = ratios, 'RMSE (MAE)'; then the gain over bicubic and
    the count of images worse than bicubic."""
    out = io.StringIO()
    out.write(f"# depthsr compare\n\nprotocol: {protocol}, normalisation: {norm} "
              f"(RMSE = mean of per-image RMSE; MAE in brackets)\n")
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        sub = [r for r in rows if r["dataset"] == dataset]
        scales = sorted({r["scale"] for r in sub}, key=lambda s: next(r["ratio"] for r in sub if r["scale"] == s))
        methods = list(dict.fromkeys(r["method"] for r in sub))
        cell = {(r["method"], r["scale"]): r for r in sub}
        border = f", border {sub[0]['border']} px" if sub[0]["border"] else ""
        out.write(f"\n## {dataset} ({sub[0]['units']}, {sub[0]['images']} images, protocol {protocol}{border})\n\n")
        out.write("| method | " + " | ".join(f"x{s}" for s in scales) + " |\n")
        out.write("|---|" + "---|" * len(scales) + "\n")
        for m in methods:
            out.write(f"| {m} | " + " | ".join(
                f"{cell[m, s]['rmse']:.3f} ({cell[m, s]['mae']:.3f})" if (m, s) in cell else "-" for s in scales)
                + " |\n")
        others = [m for m in methods if m != REFERENCE]
        if others:
            out.write("\n")
        for m in others:
            gains = [f"{100 * (1 - cell[m, s]['rmse'] / cell[REFERENCE, s]['rmse']):+.1f}% at x{s}"
                     for s in scales if (m, s) in cell and (REFERENCE, s) in cell and cell[REFERENCE, s]["rmse"] > 0]
            out.write(f"{m} vs bicubic (RMSE reduction): {', '.join(gains) or 'unavailable'}\n")
        for m in others:
            counts = [f"{cell[m, s]['worse_than_bicubic']}/{cell[m, s]['images']} at x{s}" for s in scales
                      if (m, s) in cell and cell[m, s]["worse_than_bicubic"] != ""]
            out.write(f"{m}: images worse than bicubic: {', '.join(counts) or 'unavailable (bicubic not evaluated)'}"
                      "\n")
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


def plot(rows: list[dict]) -> bytes:
    """RMSE against ratio, one line per method, one panel per data set, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        sub = [r for r in rows if r["dataset"] == dataset]
        for m in dict.fromkeys(r["method"] for r in sub):
            pts = sorted((r["ratio"], r["rmse"]) for r in sub if r["method"] == m)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
        ticks = sorted({(r["ratio"], r["scale"]) for r in sub})
        ax.set_xscale("log", base=2)
        ax.set_xticks([t[0] for t in ticks], [f"x{t[1]}" for t in ticks])
        ax.minorticks_off()
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        ax.set_title(dataset)
        ax.set_xlabel("ratio")
        ax.set_ylabel(f"RMSE ({sub[0]['units']})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    plt.close(fig)
    return buf.getvalue()


def _check_args(args: argparse.Namespace) -> list[str]:
    """The arguments, before any work; returns the method names."""
    for s in args.scales:
        if not (math.isfinite(s) and 1 < s <= MAX_RATIO):
            raise DepthSRError(f"--scales {s:g}: a ratio must be above 1 and at most {MAX_RATIO:g}")
    if args.limit is not None and args.limit < 1:
        raise DepthSRError(f"--limit {args.limit}: must be at least 1 image")
    if not (args.noise >= 0 and math.isfinite(args.noise)):
        raise DepthSRError(f"--noise {args.noise:g}: must be a number >= 0")
    names = list(dict.fromkeys(m.strip() for group in args.methods for m in group.split(",") if m.strip()))
    if not names:
        raise DepthSRError("--methods: no method given (e.g. --methods bicubic,jbu,default)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DepthSRError(f"{out}: --out names a file; give a folder for the results")
    check_writable(out / "results.csv", "results")
    return names


def _cells(spec: EvalSet, scales: list[float], protocol: str, notes: list[str]) -> list[float | None]:
    """The ratios to evaluate a data set at (None: each pair's measured lr at its own ratio)."""
    if protocol != "real":
        return list(scales)
    cells: list[float | None] = [s for s in scales if spec.has_lr(s)]
    for s in scales:
        if s not in cells:
            notes.append(f"{spec.name}: no measured {lr_stem(s)} inputs, so no x{label(s)} column")
    if spec.has_lr(None):
        cells.append(None)
        notes.append(f"{spec.name}: the measured lr inputs are evaluated at each pair's own ratio")
    if not cells:
        raise DepthSRError(f"{spec.name}: protocol 'real' needs measured inputs in every pair ("
                           f"{', '.join(lr_stem(s) for s in scales)} or lr); none found")
    return cells


def run(args: argparse.Namespace) -> int:
    from depthsr.evaluate import evaluate  # torchmetrics: imported only when this command runs

    names = _check_args(args)
    scales = list(dict.fromkeys(args.scales))
    device = resolve_device(args.device)
    specs = [d for spec in args.data for d in parse_data(spec)]
    notes = [n for spec in specs for n in spec.notes]
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
        notes.append("bicubic was added: it is the reference of the worse-than-bicubic counts")
    methods = [resolve_method(m).to(device) for m in names]
    out = Path(args.out)
    for method, name in zip(methods, names):
        untrained = [s for s in scales if not method.trained_for(s)]
        if untrained:
            trained = "/".join(f"x{s:g}" for s in method.scales or ())
            if method.ratio_range:
                trained += " and ratios {:g}-{:g}".format(*method.ratio_range)
            notes.append(f"{name} was trained for {trained}; its "
                         f"{', '.join('x' + label(s) for s in untrained)} numbers are for ratios it was not "
                         "trained for")
    plan = [(spec, [(s, spec.open(s)) for s in _cells(spec, scales, args.protocol, notes)]) for spec in specs]
    for note in notes:
        print(f"note: {note}")
    total = sum(min(len(ds), args.limit or len(ds)) for _, cells in plan for _, ds in cells) * len(methods)
    rows, image_rows = [], []
    with tqdm(total=total, desc="compare", unit="img", disable=args.quiet) as bar:
        for spec, cells in plan:
            for scale, data in cells:
                for method, name in zip(methods, names):
                    res = evaluate(method, data, scale, args.protocol, args.norm, spec.border, args.noise,
                                   args.limit, bar)
                    key = label(res.ratio)
                    if scale is None and any(s is not None and label(s) == key for s, _ in cells):
                        key = f"{key} measured"
                    row = {"method": name, "dataset": spec.name, "scale": key, "ratio": res.ratio,
                           "protocol": args.protocol, "units": res.units, "images": res.images,
                           "rmse": round(res.rmse, 6), "mae": round(res.mae, 6),
                           "rmse_pooled": round(res.rmse_pooled, 6), "delta1": round(res.delta1, 6),
                           "border": spec.border}
                    rows.append(row)
                    image_rows += [{**{k: row[k] for k in ("method", "dataset", "scale", "protocol", "units")}, **r}
                                   for r in res.per_image]
    counts = worse_than_reference(image_rows)
    for row in rows:
        worse = counts.get((row["method"], row["dataset"], row["scale"]))
        row["worse_than_bicubic"] = "" if row["method"] == REFERENCE or worse is None else worse[0]
    for (name, dataset, scale), (worse, compared) in counts.items():
        print(f"{name} on {dataset} at x{scale}: {worse} of {compared} images worse than bicubic")
    table = markdown(rows, args.protocol, args.norm, notes)
    picture = plot(rows)  # everything is computed before the first file is written
    _write_text(out / "results.csv", _csv(rows, COLUMNS))
    _write_text(out / "per_image.csv", _csv(image_rows, IMAGE_COLUMNS))
    _write_text(out / "results.md", table)
    atomic_write(out / "rmse_vs_scale.png", lambda tmp: Path(tmp).write_bytes(picture))
    print(table)
    print(f"wrote {out}/results.csv, results.md, per_image.csv, rmse_vs_scale.png")
    project = args.wandb_project or os.environ.get("WANDB_PROJECT")
    if project:
        from depthsr.wandb_runs import log_compare

        log_compare(out, project, {k: v for k, v in vars(args).items() if k != "run"})
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="RMSE table: methods x ratios x data sets")
    p.add_argument("--data", action="append", required=True,
                   help="nyu:PATH.mat | middlebury:DIR | folder:DIR (repeatable)")
    p.add_argument("--scales", type=float, nargs="+", default=[4, 8, 16],
                   help="ratios, whole or not (e.g. 2.5 4 7.5 8 16); for protocol real: which lr_xS inputs")
    p.add_argument("--methods", action="append", required=True,
                   help="comma-separated: bicubic, jbu, guided, default, or model files (repeatable)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="bicubic")
    p.add_argument("--norm", choices=("lr", "gt"), default="lr",
                   help="network input normalisation: LR min-max (default) or ground truth's (as papers)")
    p.add_argument("--noise", type=float, default=0.01, help="noise level of the noisy protocol")
    p.add_argument("--limit", type=int, default=None, help="at most this many images per data set")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="auto", help="auto (a GPU when present), cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--wandb-project", default=None,
                   help="also log the tables and the plot as a W&B run of this project (or set WANDB_PROJECT)")
    p.set_defaults(run=run)
