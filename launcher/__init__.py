"""Running a job, whatever the task: config, processes, DeepSpeed engine, loop, checkpoints."""
