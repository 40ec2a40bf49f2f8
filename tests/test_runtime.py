"""The depthsr command's malloc setting (its speed effect is measured by scripts/bench_train.py)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting")


def _applied(malloc: str | None) -> str:
    """What keep_freed_memory() returns in a fresh interpreter (it changes the whole process)."""
    env = {k: v for k, v in os.environ.items() if k != "DEPTHSR_MALLOC"}
    if malloc:
        env["DEPTHSR_MALLOC"] = malloc
    code = "from depthsr.runtime import keep_freed_memory; print(keep_freed_memory())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_glibc_accepts_the_setting():
    assert _applied(None) == "True"  # mallopt returns 0 for a parameter or value it refuses


def test_depthsr_malloc_system_declines_it():
    assert _applied("system") == "False"
