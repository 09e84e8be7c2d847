import pytest
import torch

from launcher.config.schema import DeepSpeedConfig, OptimizerConfig, ScheduleConfig
from launcher.errors import JobError
from launcher.runtime.dist import DistInfo
from launcher.runtime.engine import build_engine, deepspeed_json


def test_deepspeed_json_sets_surprising_defaults_explicitly():
    ds = deepspeed_json(DeepSpeedConfig(zero_stage=2, precision="bf16", gradient_accumulation_steps=4,
                                        gradient_clipping=0.0), micro_batch_size=8, world_size=3)
    assert ds["train_batch_size"] == 8 * 4 * 3
    assert ds["gradient_clipping"] == 0.0  # not DeepSpeed's 1.0 default since 0.19.3
    assert ds["zero_optimization"] == {"stage": 2}
    assert ds["bf16"] == {"enabled": True} and ds["fp16"] == {"enabled": False}


def test_fp16_on_cpu_is_a_clear_error():
    cpu = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    with pytest.raises(JobError, match="fp16 needs a CUDA device"):
        build_engine(torch.nn.Linear(2, 2), DeepSpeedConfig(precision="fp16"), OptimizerConfig(), ScheduleConfig(),
                     total_steps=10, micro_batch_size=4, dist=cpu)
