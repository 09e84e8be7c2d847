"""torchrun entry point: the real worker, with the test tasks added to the task table."""

import sys

from launcher import tasks
from launcher.runtime import train

tasks.TASKS["nan_injecting"] = ("tests.dist.nan_task:NanInjectingConfig", "tests.dist.nan_task:NanInjectingTask")
tasks.TASKS["sample_recording"] = ("facetrain.config:FaceTripletConfig",
                                   "tests.dist.sample_recording_task:SampleRecordingTask")

if __name__ == "__main__":
    sys.exit(train.main())
