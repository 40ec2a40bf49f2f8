"""`depthsr export`: a Lightning checkpoint of `depthsr fit` (or an earlier .pt) -> a shareable .safetensors
with its provenance in the metadata, and its sha256 recorded beside it (NAME.safetensors.sha256).

    depthsr export --ckpt runs/.../best.ckpt --out depthsr/weights/depthsr_default.safetensors --scales 4 8 16 \\
        --recipe configs/default_model.yaml --data "what it was trained on" --results out/compare/results.csv
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import yaml

from depthsr.errors import DepthSRError
from depthsr.methods.digests import write_sha256_record
from depthsr.methods.model_file import as_scales, read_model_file, save_network
from depthsr.methods.network import build_network
from depthsr.models.input_cleaner import check_gate
from depthsr.wandb_runs import log_export, training_run, wandb_online

RESULT_COLUMNS = ("method", "dataset", "scale", "protocol", "units", "images", "rmse", "mae")


def read_recipe(path: Path) -> dict:
    """The training config (a LightningCLI YAML), as plain data."""
    try:
        config = yaml.safe_load(path.read_text())
    except OSError:
        raise DepthSRError(f"{path}: no such recipe file") from None
    except yaml.YAMLError as err:
        raise DepthSRError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise DepthSRError(f"{path}: not a training config (expected a YAML mapping)")
    return {"file": path.name, "config": config}


def read_results(path: Path) -> dict:
    """The headline numbers: the rows of a `depthsr compare` results.csv."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        raise DepthSRError(f"{path}: no such results file") from None
    if not rows or not {"method", "dataset", "scale", "rmse"} <= set(rows[0]):
        raise DepthSRError(f"{path}: not a results.csv of `depthsr compare` (method, dataset, scale, rmse columns)")
    out = []
    for row in rows:
        entry = {k: row[k] for k in RESULT_COLUMNS if row.get(k) not in (None, "")}
        for key in ("scale", "images", "rmse", "mae"):
            if key in entry:
                try:
                    value = float(entry[key])
                except ValueError:
                    raise DepthSRError(f"{path}: non-numeric {key} {entry[key]!r}") from None
                entry[key] = int(value) if key in ("scale", "images") and value.is_integer() else value
        out.append(entry)
    return {"file": path.name, "rows": out}


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise DepthSRError(f"{out}: depthsr export writes .safetensors (name it NAME.safetensors)")
    if args.consistency is not None and args.consistency < 0:
        raise DepthSRError(f"--consistency {args.consistency}: the number of back-projection steps is 0 or more")
    if args.ratio_range is not None and not 1 < args.ratio_range[0] < args.ratio_range[1]:
        raise DepthSRError(f"--ratio-range {args.ratio_range[0]:g} {args.ratio_range[1]:g}: expected LOW HIGH with "
                           "1 < LOW < HIGH")
    source = read_model_file(args.ckpt)
    model = build_network(args.ckpt, source)  # refuses weights that do not fit before anything is written
    if args.consistency is not None:
        model.consistency = args.consistency
    if args.flip_ensemble is not None:
        model.flip_ensemble = args.flip_ensemble
    if args.self_check is not None:
        model.self_check = args.self_check
    if args.clean_gate is not None:
        if getattr(model, "cleaner", None) is None:
            raise DepthSRError(f"--clean-gate: {args.ckpt} has no input cleaner to gate (train one with "
                               "--model.model_kwargs '{clean_input: true}')")
        try:
            model.cleaner.gate = check_gate(args.clean_gate)
        except ValueError:
            raise DepthSRError(f"--clean-gate {args.clean_gate[0]:g} {args.clean_gate[1]:g}: expected LOW HIGH noise "
                               "levels with 0 <= LOW < HIGH") from None
    info = dict(source.info)
    if args.recipe:  # the config file, beside the hyper-parameters the checkpoint itself recorded
        kept = {k: v for k, v in (info.get("recipe") or {}).items() if k in ("model", "data")}
        info["recipe"] = {**read_recipe(Path(args.recipe)), **kept}
    if args.data:
        info["training_data"] = {**(info.get("training_data") or {}), "description": args.data}
    if args.results:
        info["results"] = read_results(Path(args.results))
    if args.ratio_range is not None:
        info["ratio_range"] = list(args.ratio_range)
    scales = list(as_scales(args.scales) or source.scales or [])
    name, kwargs = getattr(model, "conv_kind", source.name), getattr(model, "config", source.kwargs)
    save_network(out, model, name, kwargs, scales, info)
    sha = write_sha256_record(out)
    trained_by = training_run(args.ckpt)
    if trained_by and wandb_online():  # the shared file beside the run's checkpoints, where W&B users look
        log_export(out, trained_by)
    missing = [k for k in ("recipe", "training_data", "results") if k not in info]
    print(f"wrote {out} ({sum(p.numel() for p in model.parameters()):,} parameters, scales {scales})\n"
          f"sha256 {sha} (recorded in {out.name}.sha256)"
          + (f"\nnote: no {', '.join(missing)} recorded (see depthsr export --help)" if missing else ""))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="checkpoint -> shareable .safetensors with its provenance")
    p.add_argument("--ckpt", required=True, help="a .ckpt written by depthsr fit (or a .pt / .safetensors)")
    p.add_argument("--out", required=True, help="the .safetensors to write (its sha256 goes to OUT.sha256)")
    p.add_argument("--scales", type=float, nargs="*", help="scales it was trained for (default: from the ckpt)")
    p.add_argument("--ratio-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="a range of ratios it was trained on besides --scales (e.g. by an earlier stage with random "
                        "ratios; default: from the ckpt)")
    p.add_argument("--recipe", help="the training config (YAML) to record, e.g. configs/default_model.yaml")
    p.add_argument("--consistency", type=int, metavar="STEPS",
                   help="back-projection steps the exported network ends in (no parameters, so any trained network "
                        "can take them; default: as trained)")
    p.add_argument("--flip-ensemble", action=argparse.BooleanOptionalAction,
                   help="the exported network averages its answers for the inputs and their mirror image (twice the "
                        "time; --no-flip-ensemble: one pass, e.g. a faster copy of the default; default: as trained)")
    p.add_argument("--self-check", action=argparse.BooleanOptionalAction,
                   help="the exported network blends its answer with bicubic by the trust it earns on the input "
                        "downsampled by the same ratio (depthsr.models.self_check; default: as trained)")
    p.add_argument("--clean-gate", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="weigh the input cleaner's correction by how noisy each input is: none at or below the noise "
                        "level LOW, all of it from HIGH (standard deviation as a fraction of the depth range; "
                        "depthsr.models.noise_level), so one file takes clean and raw sensor depth (default: as "
                        "trained)")
    p.add_argument("--data", help="a description of the data it was trained on, to record")
    p.add_argument("--results", help="a results.csv of depthsr compare: the headline numbers to record")
    p.set_defaults(run=run)
