"""Sub-commands of `depthsr` besides the Lightning ones; each module adds its parser."""
from __future__ import annotations

import argparse

from depthsr.commands import compare, export, profile, upsample


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depthsr",
        description="Colour-guided depth super-resolution. Training and evaluation: depthsr fit|validate|test "
                    "--config configs/nyu_x4.yaml (see depthsr fit --help).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (upsample, compare, export, profile):
        module.add_parser(sub)
    return parser
