"""The processing loop, checkpoints, evaluation and metrics."""
