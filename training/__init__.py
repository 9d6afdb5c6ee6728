"""Offline pipeline: datasets, the synthetic world, annotation, three-stage training, evaluation."""
