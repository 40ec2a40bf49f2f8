"""Sub-commands of `depthsr` besides the Lightning ones; each module adds its parser."""
from __future__ import annotations

import argparse

from depthsr import __version__
from depthsr.commands import compare, export, profile, upsample

# LightningCLI's commands: depthsr.cli routes them before this parser; listed here so --help shows them
LIGHTNING_HELP = {"fit": "train a network (depthsr fit --config configs/nyu_x4.yaml; --help for every option)",
                  "validate": "evaluate a checkpoint on the validation sets",
                  "test": "evaluate a checkpoint on the test sets (prints the RMSE per set)"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depthsr",
        description="Colour-guided depth super-resolution. Training and evaluation: depthsr fit|validate|test "
                    "--config configs/nyu_x4.yaml (see depthsr fit --help).",
    )
    parser.add_argument("--version", action="version", version=f"depthsr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in LIGHTNING_HELP.items():
        sub.add_parser(name, help=text, add_help=False)
    for module in (upsample, compare, export, profile):
        module.add_parser(sub)
    return parser
