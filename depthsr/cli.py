"""The `depthsr` command.

    depthsr fit|validate|test --config configs/nyu_x4.yaml ...   training and evaluation (LightningCLI)
    depthsr upsample --rgb RGB --depth LR --out OUT               upsample your own depth maps
    depthsr compare --data SPEC --scales 4 8 16 --methods ...     one table: methods x scales x data sets
    depthsr profile                                               parameters and FLOPs of each network
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from depthsr.errors import DepthSRError
from depthsr.runtime import keep_freed_memory

LIGHTNING_COMMANDS = ("fit", "validate", "test")


def _wandb_offline_without_key() -> None:
    """W&B runs offline (sync later) unless an API key or a login is present."""
    netrc = Path.home() / ".netrc"
    has_login = netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    if "WANDB_MODE" not in os.environ and not os.environ.get("WANDB_API_KEY") and not has_login:
        os.environ["WANDB_MODE"] = "offline"


def run_lightning(argv: list[str]) -> None:
    from depthsr.data.datamodule import DSRDataModule
    from depthsr.lit import DSRModule
    from depthsr.training import DepthSRCLI, LogConfig

    _wandb_offline_without_key()
    DepthSRCLI(DSRModule, DSRDataModule, args=argv, save_config_callback=LogConfig,
               save_config_kwargs={"overwrite": True})
    import wandb

    if wandb.run is not None:  # close the run now, so its files are complete when the command returns
        wandb.finish()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    keep_freed_memory()
    try:
        if argv and argv[0] in LIGHTNING_COMMANDS:
            run_lightning(argv)
            return 0
        from depthsr.commands import build_parser

        args = build_parser().parse_args(argv)
        return int(args.run(args) or 0)
    except DepthSRError as err:
        print(f"depthsr: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file the checks did not foresee (disk full, permissions changed meanwhile)
        where = f"{err.filename}: " if err.filename else ""
        print(f"depthsr: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: files are written through temporary files, so none is half-written
        print("depthsr: interrupted (no file was left half-written)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
