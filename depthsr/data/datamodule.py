"""The Lightning data module: training crops with on-the-fly degradation, full-image evaluation sets.

Training sources: NYU v2 (``mat_path``: first ``num_train`` pairs, less a validation slice at their end),
procedural scenes (``synthetic``), procedural rooms (``rooms``) and folder sets whose meta.json says
``role: train`` (``train_folders``).
Evaluation: the validation slice (or held-out procedural scenes) and the NYU test part, each at every
scale in ``scales`` under ``protocol``.
"""
from __future__ import annotations

import math
import random
from typing import Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from depthsr.data.degrade import TofParams, downsample, edge_dropouts, is_integer_ratio, misregister, ratio_name
from depthsr.data.nyu import nyu_split
from depthsr.data.packaged import PackagedPairs
from depthsr.data.rooms import RoomDataset
from depthsr.data.sample import Sample
from depthsr.data.sets import Degraded, EvalSet, ShardSampler, nyu_sets, synthetic_val_set, train_folder
from depthsr.data.synthetic import SyntheticDataset
from depthsr.errors import DepthSRError


class Cached(Dataset):
    """`base` with each item read once per process and kept in memory (small training sets)."""

    def __init__(self, base: Dataset) -> None:
        self.base, self.items = base, {}

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Sample:
        if index not in self.items:
            self.items[index] = self.base[index]
        return self.items[index]


class Repeated(Dataset):
    """`base` listed `times` times (weights a small set against the others; a cache under it is shared)."""

    def __init__(self, base: Dataset, times: int) -> None:
        self.base, self.times = base, times

    def __len__(self) -> int:
        return len(self.base) * self.times

    def __getitem__(self, index: int) -> Sample:
        return self.base[index % len(self.base)]


def nearest_centres(size: int, factor: float) -> torch.Tensor:  # round(size / factor) source indices
    """The source index nearest each pixel centre of a grid `factor` times coarser (centres aligned)."""
    centres = (torch.arange(round(size / factor)) + 0.5) * factor - 0.5
    return centres.round().long().clamp(0, size - 1)


def downscale_pair(s: Sample, factor: float) -> Sample:
    """A training pair seen from `factor` times farther: the RGB area-averaged as a camera would record it, depth
    and validity taken at the nearest source pixel, so depth edges stay as sharp as in the source."""
    h, w = s["depth"].shape[-2:]
    rows, cols = nearest_centres(h, factor), nearest_centres(w, factor)
    rgb = F.interpolate(s["rgb"][None], size=(len(rows), len(cols)), mode="area")[0]
    pick = {k: s[k][:, rows][:, :, cols] for k in ("depth", "valid")}
    return {**s, "rgb": rgb, **pick, "name": f"{s.get('name', '')}/{factor:g}"}


class Downscaled(Dataset):
    """`base` with every pair downscaled by `factor` (`downscale_pair`): the same scenes at other image scales."""

    def __init__(self, base: Dataset, factor: float) -> None:
        self.base, self.factor = base, factor

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Sample:
        return downscale_pair(self.base[index], self.factor)


class RandomCrops(Dataset):
    """Random `crop` x `crop` windows with random flips; each base item is visited `repeats` times per epoch.

    With `pad_small`, an item smaller than the crop is mirrored outwards (reflection) up to it, placed at a random
    offset, and the mirrored pixels are marked invalid: the network sees a whole crop, the loss only the item's
    own pixels. Without it such an item is refused."""

    def __init__(self, base: Dataset, crop: int, repeats: int = 1, pad_small: bool = False) -> None:
        self.base, self.crop, self.repeats, self.pad_small = base, crop, repeats, pad_small

    def __len__(self) -> int:
        return len(self.base) * self.repeats

    def __getitem__(self, index: int) -> Sample:
        s = self.base[index % len(self.base)]
        h, w = s["depth"].shape[-2:]
        if h < self.crop or w < self.crop:
            if not self.pad_small:
                raise DepthSRError(f"{s.get('name')}: {h} x {w} is smaller than the training crop {self.crop} "
                                   "(--data.pad_small mirrors it up to the crop)")
            s = {**s, **pad_to(s, self.crop)}
            h, w = s["depth"].shape[-2:]
        y, x = random.randint(0, h - self.crop), random.randint(0, w - self.crop)
        out = {k: s[k][..., y : y + self.crop, x : x + self.crop] for k in ("rgb", "depth", "valid")}
        if random.random() < 0.5:
            out = {k: v.flip(-1) for k, v in out.items()}
        if random.random() < 0.5:
            out = {k: v.flip(-2) for k, v in out.items()}
        return {**{k: v.contiguous() for k, v in out.items()}, "units": s.get("units", "")}


def pad_to(s: Sample, side: int) -> dict[str, torch.Tensor]:
    """`s`'s rgb, depth and valid mirrored outwards to at least `side` x `side`, the item at a random offset; the
    mirrored pixels invalid. Refuses an item under half the side (a reflection cannot reach that far)."""
    h, w = s["depth"].shape[-2:]
    if 2 * h <= side or 2 * w <= side:
        raise DepthSRError(f"{s.get('name')}: {h} x {w} is not over half the training crop {side}: too small to "
                           "mirror up to it")
    rows, cols = max(side - h, 0), max(side - w, 0)  # to add
    top, left = random.randint(0, rows), random.randint(0, cols)
    pad = (left, cols - left, top, rows - top)
    out = {k: F.pad(s[k][None], pad, mode="reflect")[0] for k in ("rgb", "depth")}
    out["valid"] = F.pad(s["valid"], pad, value=False)
    return out


class DegradeCollate:
    """Stacks training crops and adds `lr`, at one ratio and one protocol drawn per batch.

    The ratio is one of `scales`, or with probability `random_ratios` a log-uniform draw from `ratio_range`
    (any real ratio: the network serves them all). The protocol is `protocol`, or `tof` with probability
    `tof_share` (real-sensor degradations), or `point` with probability `point_share` (depth picked pixel by pixel,
    without anti-aliasing: what a plain nearest-neighbour shrink gives); with probability `dropouts` the edge
    dropouts of the `tof` protocol alone are added to a batch of `protocol` (`degrade.edge_dropouts`). With
    probability `misregistered` the batch's RGB is moved against its depth by up to `max_shift` pixels
    (`degrade.misregister`)."""

    def __init__(self, scales: list[float], protocol: str, noise: float, random_ratios: float = 0.0,
                 ratio_range: tuple[float, float] = (2.0, 16.0), tof_share: float = 0.0,
                 misregistered: float = 0.0, max_shift: float = 2.0, dropouts: float = 0.0,
                 point_share: float = 0.0) -> None:
        self.scales, self.protocol, self.noise = list(scales), protocol, noise
        self.random_ratios, self.ratio_range, self.tof_share = random_ratios, tuple(ratio_range), tof_share
        self.misregistered, self.max_shift, self.dropouts = misregistered, max_shift, dropouts
        self.point_share = point_share

    def _ratio(self) -> float:
        if random.random() < self.random_ratios:
            lo, hi = self.ratio_range
            return float(math.exp(random.uniform(math.log(lo), math.log(hi))))
        return random.choice(self.scales)

    def __call__(self, items: list[Sample]) -> dict[str, torch.Tensor]:
        batch = {k: torch.stack([it[k] for it in items]) for k in ("rgb", "depth", "valid")}
        scale = self._ratio()
        draw = random.random()  # one draw for the protocol, whatever the shares: the recipes' streams stay
        if draw < self.tof_share:
            batch["lr"] = torch.stack([downsample(it["depth"], scale, "tof", units=it.get("units", ""))
                                       for it in items])
        elif draw < self.tof_share + self.point_share:
            batch["lr"] = downsample(batch["depth"], scale, "point")
        else:
            batch["lr"] = downsample(batch["depth"], scale, self.protocol, self.noise)
            if self.dropouts and random.random() < self.dropouts:  # no draw at 0: the recipes' streams stay
                batch["lr"] = edge_dropouts(batch["lr"], TofParams.dropout)
        if random.random() < self.misregistered:
            batch["rgb"] = misregister(batch["rgb"], self.max_shift)
        batch["scale"] = torch.tensor(float(scale))
        return batch


class DSRDataModule(pl.LightningDataModule):
    """Data for guided depth super-resolution.

    Args:
        mat_path: NYU v2 labeled .mat (or a plain HDF5 file of the same layout).
        num_train: the first `num_train` NYU pairs train (the rest test).
        val_count: the last `val_count` of the training pairs validate instead.
        synthetic: procedural training scenes (0: none).
        rooms: procedural rooms seen in perspective (`depthsr.data.rooms`; 0: none).
        room_size: the side the rooms are drawn at (a training crop then sees part of one; default: the crop).
        train_folders: folder sets marked ``role: train`` to train on as well.
        folder_repeats: how many times each folder set is listed (weights it against the other sources).
        folder_downscales: each folder set is trained on at each of these downscalings (1: as it is; 3: a third of
            its size, its scenes three times farther), each listed `folder_repeats` times.
        packaged_repeats: how many times the real pair bundled with scikit-image (Middlebury 2014 Motorcycle,
            `depthsr.data.packaged`) is listed (0: not used).
        scales: training ratios (one drawn per batch); evaluation runs at each.
        random_ratios: share of training batches at a random real ratio from `ratio_range` instead.
        ratio_range: the smallest and largest random ratio (drawn log-uniformly).
        tof_share: share of training batches degraded by the `tof` protocol instead of `protocol`.
        point_share: share of training batches degraded by the `point` protocol instead (with `tof_share` at most 1).
        dropouts: share of the other batches given the `tof` protocol's edge dropouts (filled with the farthest
            depth) on top of `protocol`: a network that has seen them no longer draws them as edges.
        misregistered: share of training batches whose RGB is moved against the depth (real rigs).
        max_shift: the largest such move, in high-resolution pixels per axis.
        protocol: 'bicubic', 'point' or 'noisy'.
        noise: noise level of the noisy protocol (fraction of each image's depth range).
        crop: training crop size (a multiple of every scale).
        pad_small: train on items smaller than the crop too, mirrored up to it, the mirrored pixels outside the loss
            (`RandomCrops`); without it they are refused.
        repeats: visits of each training image per epoch (random crops differ).
        cache: keep decoded training images in memory (for small training sets).
        batch_size, num_workers: loader settings.
    """

    def __init__(
        self,
        mat_path: str | None = None,
        num_train: int = 1000,
        val_count: int = 50,
        synthetic: int = 0,
        rooms: int = 0,
        room_size: int | None = None,
        train_folders: list[str] | None = None,
        folder_repeats: int = 1,
        folder_downscales: list[float] | None = None,
        packaged_repeats: int = 0,
        scales: list[float] | None = None,
        random_ratios: float = 0.0,
        ratio_range: tuple[float, float] = (2.0, 16.0),
        tof_share: float = 0.0,
        point_share: float = 0.0,
        dropouts: float = 0.0,
        misregistered: float = 0.0,
        max_shift: float = 2.0,
        protocol: Literal["bicubic", "point", "noisy", "tof"] = "bicubic",
        noise: float = 0.01,
        crop: int = 256,
        pad_small: bool = False,
        repeats: int = 1,
        cache: bool = False,
        batch_size: int = 4,
        num_workers: int = 2,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # the CLI logs the whole config (depthsr.training.LogConfig)
        self.scales = list(scales or [4])
        if any(s <= 1 or crop % s for s in self.scales if is_integer_ratio(s)):
            raise DepthSRError(f"crop {crop} must be a multiple of every integer scale {self.scales}")
        if any(s <= 1 for s in [*self.scales, *ratio_range]):
            raise DepthSRError(f"scales and ratio_range must be above 1, got {self.scales} and {list(ratio_range)}")
        if room_size is not None and room_size < crop:
            raise DepthSRError(f"room_size {room_size} is smaller than the training crop {crop}")
        if any(f < 1 for f in folder_downscales or []):
            raise DepthSRError(f"folder_downscales must be 1 or more (no upscaling), got {list(folder_downscales)}")
        if tof_share + point_share > 1:
            raise DepthSRError(f"tof_share {tof_share:g} and point_share {point_share:g} add up to more than 1")
        if mat_path is None and not synthetic and not rooms and not train_folders:
            raise DepthSRError("no training data: give --data.mat_path, --data.synthetic N, --data.rooms N or "
                               "--data.train_folders")

    def check(self, stage: str) -> None:
        """The data problems a user can cause, found before the Trainer starts (`depthsr fit|validate|test`
        call it first): a missing or unreadable NYU file, no test set, a validation slice that would take more
        than half of the training pairs, fewer training crops per epoch than one batch."""
        hp = self.hparams
        if hp.mat_path is not None:
            nyu_split(hp.mat_path, hp.num_train)
            if stage == "fit" and hp.val_count > hp.num_train // 2:
                n_val = min(hp.val_count, hp.num_train - 1)
                raise DepthSRError(f"--data.val_count {hp.val_count} would validate on {n_val} of the {hp.num_train} "
                                   f"training pairs: give --data.val_count {hp.num_train // 2} or less")
        elif stage == "test":
            raise DepthSRError("no test set: give --data.mat_path (the NYU file's last pairs are the test set)")
        if stage != "fit":
            return
        sizes = [hp.num_train - min(hp.val_count, hp.num_train - 1) if hp.mat_path is not None else 0, hp.synthetic,
                 hp.rooms, hp.packaged_repeats,
                 *(len(train_folder(p)) * hp.folder_repeats * len(hp.folder_downscales or [1.0])
                   for p in hp.train_folders or [])]
        crops = sum(sizes) * hp.repeats
        if crops < hp.batch_size:
            raise DepthSRError(f"only {crops} training crops per epoch, fewer than the batch size {hp.batch_size}: "
                               "raise --data.repeats or lower --data.batch_size")

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        train: list[Dataset] = []

        def cache(ds: Dataset) -> Dataset:
            return Cached(ds) if hp.cache else ds

        self.val_sets: list[EvalSet] = []
        self.test_sets: list[EvalSet] = []
        if hp.mat_path is not None:
            nyu_train, nyu_val, nyu_test = nyu_sets(hp.mat_path, hp.num_train, hp.val_count)
            train.append(cache(nyu_train))
            self.val_sets += [nyu_val] if nyu_val is not None else []
            self.test_sets.append(nyu_test)
        if hp.synthetic:
            train.append(cache(SyntheticDataset(hp.synthetic, (hp.crop, hp.crop), seed=0)))
        if hp.rooms:
            side = hp.room_size or hp.crop
            train.append(cache(RoomDataset(hp.rooms, (side, side), seed=0)))
        if (hp.synthetic or hp.rooms) and not self.val_sets:
            self.val_sets.append(synthetic_val_set())
        train += [Repeated(cache(Downscaled(train_folder(p), f) if f != 1 else train_folder(p)), hp.folder_repeats)
                  for p in hp.train_folders or [] for f in hp.folder_downscales or [1.0]]
        if hp.packaged_repeats:
            train.append(PackagedPairs(hp.packaged_repeats))
        self.train_set = RandomCrops(ConcatDataset(train), hp.crop, hp.repeats, hp.pad_small)

    def _eval_loaders(self, sets: list[EvalSet]) -> list[DataLoader]:
        loaders = []
        for spec in sets:
            for scale in self.scales:
                data = Degraded(spec.open(scale), scale, self.hparams.protocol, self.hparams.noise, spec.border,
                                spec.name)
                sampler = None
                if torch.distributed.is_available() and torch.distributed.is_initialized():
                    sampler = ShardSampler(data)
                # its own generator: evaluation never draws from (and shifts) the training RNG stream
                loaders.append(DataLoader(data, batch_size=1, sampler=sampler, num_workers=self.hparams.num_workers,
                                          persistent_workers=self.hparams.num_workers > 0,
                                          generator=torch.Generator().manual_seed(0)))
        return loaders

    def eval_names(self, stage: str) -> list[str]:
        """The names its evaluation loaders give their images' `eval_set`, in loader order."""
        sets = self.val_sets if stage == "val" else self.test_sets
        return [f"{spec.name}_{ratio_name(scale)}" for spec in sets for scale in self.scales]

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        if len(self.train_set) < hp.batch_size:
            raise DepthSRError(f"only {len(self.train_set)} training crops per epoch, fewer than the batch size "
                               f"{hp.batch_size}: raise --data.repeats or lower --data.batch_size")
        return DataLoader(self.train_set, batch_size=hp.batch_size, shuffle=True, drop_last=True,
                          num_workers=hp.num_workers, persistent_workers=hp.num_workers > 0,
                          collate_fn=DegradeCollate(self.scales, hp.protocol, hp.noise, hp.random_ratios,
                                                    hp.ratio_range, hp.tof_share, hp.misregistered,
                                                    hp.max_shift, hp.dropouts, hp.point_share))

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(self.val_sets)

    def test_dataloader(self) -> list[DataLoader]:
        if not self.test_sets:
            raise DepthSRError("no test set: give --data.mat_path (the NYU file's last pairs are the test set)")
        return self._eval_loaders(self.test_sets)
