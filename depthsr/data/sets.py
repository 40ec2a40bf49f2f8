"""Which data plays which role: the evaluation sets (name, data, metric border) of `depthsr compare` and of
the data module, and the training sets (folder sets marked `role: train`), in one place.

An `EvalSet` opens its data at a ratio (None: each pair's measured `lr` at its own ratio) and carries the
border its metric leaves out: NYU's 6 pixels, a folder set's own (`meta.json`), 0 otherwise. `Degraded` is
an evaluation set at one ratio as the data module's loaders give it (`ShardSampler` spreads it over processes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset, DistributedSampler

from depthsr.data.degrade import evaluation_sample, ratio_name
from depthsr.data.folder import FolderDataset, read_meta
from depthsr.data.middlebury import middlebury_dataset
from depthsr.data.nyu import NUM_TRAIN, NYU_BORDER, NYUv2Dataset, check_nyu_file, nyu_split
from depthsr.data.sample import Sample
from depthsr.data.synthetic import held_out_scenes
from depthsr.errors import DepthSRError


def _never(scale: float | None) -> bool:
    return False


@dataclass
class EvalSet:
    """One evaluation set."""

    name: str
    open: Callable[[float | None], Dataset]  # ratio (None: each pair's measured lr) -> data set
    border: int  # pixels along each edge the metric leaves out
    has_lr: Callable[[float | None], bool] = _never  # measured inputs at that ratio?
    notes: list[str] = field(default_factory=list)


def fixed(name: str, data: Dataset, border: int) -> EvalSet:
    """A set whose data is the same at every ratio (the protocol makes the inputs)."""
    return EvalSet(name, lambda scale: data, border)


def folder_set(name: str, root: Path) -> EvalSet:
    ds = FolderDataset(root)
    return EvalSet(name, lambda s: FolderDataset(root, s, measured=s is None), ds.border, ds.has_lr)


def nyu_test_set(path: Path) -> EvalSet:
    """The NYU test part as `compare` reads `nyu:PATH.mat`: the pairs after the first NUM_TRAIN, or, in a file
    of NUM_TRAIN pairs or fewer, all of them (with a note saying so)."""
    total = check_nyu_file(path)
    if total > NUM_TRAIN:
        return fixed("nyu", NYUv2Dataset(path, range(NUM_TRAIN, total)), NYU_BORDER)
    note = (f"nyu: {path} has only {total} pairs, so all of them are evaluated; in the standard split the first "
            f"{NUM_TRAIN} pairs train and only the pairs after them test")
    return EvalSet("nyu", lambda s: NYUv2Dataset(path, range(total)), NYU_BORDER, notes=[note])


def nyu_sets(path: str | Path, num_train: int, val_count: int) -> tuple[Dataset, EvalSet | None, EvalSet]:
    """The data module's NYU split: (training pairs, the validation slice at their end or None, test part)."""
    train_idx, test_idx = nyu_split(path, num_train)
    n_val = min(val_count, len(train_idx) - 1)
    train = NYUv2Dataset(path, train_idx[: len(train_idx) - n_val])
    val = fixed("nyu_val", NYUv2Dataset(path, train_idx[len(train_idx) - n_val :]), NYU_BORDER) if n_val > 0 else None
    return train, val, fixed("nyu_test", NYUv2Dataset(path, test_idx), NYU_BORDER)


def synthetic_val_set() -> EvalSet:
    """Held-out procedural scenes: validation when no NYU file is given."""
    return fixed("synthetic_val", held_out_scenes(), 0)


def train_folder(path: str | Path) -> FolderDataset:
    """A folder set to train on; refused unless its meta.json says `role: train`."""
    ds = FolderDataset(path)
    if ds.role != "train":
        raise DepthSRError(f"{path}: meta.json marks this set role '{ds.role}'; only 'train' sets may be trained on")
    return ds


def parse_data(spec: str) -> list[EvalSet]:
    """'nyu:PATH.mat', 'middlebury:DIR' or 'folder:DIR' (a set, or a folder of sets) -> evaluation sets; sets
    marked `role: train` in a folder of sets are skipped (and said so)."""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in ("nyu", "middlebury", "folder"):
        raise DepthSRError(f"--data {spec!r}: expected nyu:PATH.mat, middlebury:DIR or folder:DIR")
    root = Path(path)
    if kind == "nyu":
        return [nyu_test_set(root)]
    if kind == "middlebury":
        if isinstance(middlebury_dataset(root), FolderDataset):
            return [folder_set(root.name, root)]
        return [EvalSet(root.name, lambda s: middlebury_dataset(root, s), 0)]
    if not root.is_dir():
        raise DepthSRError(f"{root}: no such folder")
    if (root / "meta.json").is_file() or any((p / "rgb.png").is_file() for p in root.iterdir()):
        return [folder_set(root.name, root)]
    sets = [p for p in sorted(root.iterdir()) if (p / "meta.json").is_file()]
    if not sets:
        raise DepthSRError(f"{root}: neither an RGB-D folder set nor a folder of sets (no meta.json found)")
    specs = []
    for p in sets:
        if read_meta(p).get("role") == "train":
            print(f"skipping {p.name}: marked role 'train' (not for evaluation)")
            continue
        specs.append(folder_set(p.name, p))
    return specs


class ShardSampler(DistributedSampler):
    """Evaluation indices rank, rank + world, ...: every image on exactly one process. Ranks are evened out
    (Lightning needs a batch on each) with padding indices >= len(dataset), which `Degraded` returns with
    an all-invalid mask, so the metric never counts them. A DistributedSampler subclass, so Lightning
    keeps it as it is."""

    def __init__(self, dataset: Dataset) -> None:
        super().__init__(dataset, shuffle=False)
        n = len(dataset)
        per_rank = -(-n // self.num_replicas)
        self.indices = [i if i < n else n + i % n for i in range(self.rank, per_rank * self.num_replicas,
                                                                  self.num_replicas)]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class Degraded(Dataset):
    """Full evaluation images of one set at one ratio under a protocol (`evaluation_sample`, as `compare` makes
    them), each carrying what its evaluation needs: `eval_set` (the set's name and ratio, e.g. nyu_test_x4),
    `border` (pixels its metric leaves out) and `protocol`."""

    def __init__(self, base: Dataset, scale: float, protocol: str, noise: float = 0.01, border: int = 0,
                 name: str = "eval") -> None:
        self.base, self.scale, self.protocol, self.noise = base, scale, protocol, noise
        self.border, self.name = border, f"{name}_{ratio_name(scale)}"

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Sample:
        padding, index = index >= len(self.base), index % len(self.base)  # see ShardSampler
        s = evaluation_sample(self.base[index], self.scale, self.protocol, self.noise, index)
        s.update(border=self.border, eval_set=self.name, protocol=self.protocol)
        if padding:
            s["valid"] = torch.zeros_like(s["valid"])
        return s
