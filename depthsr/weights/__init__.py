"""Package data: the shipped models (default and tof) and their sha256 records (the repo's checkpoints/ links
here; model card: checkpoints/README.md)."""
