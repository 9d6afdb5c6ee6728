"""The three-stage trainer: configuration, resumable sampling, atomic checkpoints, the loop, logs."""
