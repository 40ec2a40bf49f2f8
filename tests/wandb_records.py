"""Read the records of a W&B offline run file (``run-ID.wandb``), to check what a real run logged.

The file is a 7-byte header (``:W&B``, magic, version) followed by LevelDB-style log blocks of 32 KiB:
each chunk has a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) and its payload;
whole payloads are ``wandb_internal_pb2.Record`` protobufs.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768


def records(path: Path) -> list:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    out, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:
            pos += left
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(pending)
            out.append(rec)
    return out


def run_config(path: Path) -> dict:
    """The run's config: every key set at start or updated later, values decoded from JSON."""
    config = {}
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        items = rec.run.config.update if kind == "run" else rec.config.update if kind == "config" else []
        for item in items:
            config[item.key] = json.loads(item.value_json)
    return config


def history_keys(path: Path) -> set[str]:
    """Every metric name the run logged (media such as tables and images are nested under their name)."""
    return {item.key or item.nested_key[0] for rec in records(path)
            if rec.WhichOneof("record_type") == "history"
            for item in rec.history.item}
