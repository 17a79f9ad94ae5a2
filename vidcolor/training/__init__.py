"""Training: the data set built from packages, the trainers (per-frame and temporal), their inputs."""
