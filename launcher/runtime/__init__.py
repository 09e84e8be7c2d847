"""Inside a job's processes: the worker entry point, process group, DeepSpeed engine seam, optimizer
and schedule, the one training loop, checkpoints, train state and results."""
