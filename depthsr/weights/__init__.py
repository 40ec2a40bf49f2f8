"""Package data: the shipped default model and its sha256 record (the repo's checkpoints/ links here; model card:
checkpoints/README.md)."""
