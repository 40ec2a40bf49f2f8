"""The `depthsr` command.

    depthsr fit|validate|test --config configs/nyu_x4.yaml ...   training and evaluation (LightningCLI)
    depthsr upsample --rgb RGB --depth LR --out OUT               upsample your own depth maps
    depthsr compare --data SPEC --scales 4 8 16 --methods ...     one table: methods x scales x data sets
    depthsr profile                                               parameters and FLOPs of each network
"""
from __future__ import annotations

import re
import sys
from argparse import ArgumentError

from depthsr.errors import DepthSRError
from depthsr.runtime import keep_freed_memory, quiet_libraries
from depthsr.wandb_runs import offline_without_key

LIGHTNING_COMMANDS = ("fit", "validate", "test")


def _refuse_optimizer_options(argv: list[str]) -> None:
    for arg in argv:
        name = arg.split("=", 1)[0].split(".", 1)[0]
        if name in ("--optimizer", "--lr_scheduler"):
            raise DepthSRError(f"{name}: depthsr trains with AdamW and its own schedule; set --model.lr, "
                               "--model.weight_decay and --model.scheduler cosine|step (--model.step_size)")


def _one_line(err: Exception) -> str:
    """jsonargparse's error (several lines) as one: 'Parser key "model.loss": Expected a typing.Literal[...]'."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    text = re.sub(r'Parser key "([^"]+)":', r"--\1:", text)
    text = re.sub(r"Expected a typing\.Literal\[(.*?)\]\.", r"expected one of \1,", text)
    return text.replace("Got value:", "got").replace("Key ", "").replace("Unrecognized", "unrecognized")


def run_lightning(argv: list[str]) -> None:
    from depthsr.data.datamodule import DSRDataModule
    from depthsr.lit import DSRModule
    from depthsr.training import DepthSRCLI, LogConfig

    _refuse_optimizer_options(argv)
    offline_without_key()
    try:
        DepthSRCLI(DSRModule, DSRDataModule, args=argv, save_config_callback=LogConfig,
                   save_config_kwargs={"overwrite": True}, parser_kwargs={"exit_on_error": False},
                   auto_configure_optimizers=False)
    except ArgumentError as err:
        raise DepthSRError(_one_line(err)) from None
    import wandb

    if wandb.run is not None:  # close the run now, so its files are complete when the command returns
        wandb.finish()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    keep_freed_memory()
    quiet_libraries()
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
