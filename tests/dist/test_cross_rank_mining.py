"""2 real ranks mining across the global batch = one process over the concatenated batch."""

import json
import subprocess
import sys
from pathlib import Path

ENTRY = Path(__file__).with_name("mining_rank.py")


def test_two_ranks_give_the_single_process_loss_and_gradients(tmp_path, subprocess_env):
    out = tmp_path / "report.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(ENTRY),
               str(out)]
    proc = subprocess.run(command, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert len(report) == 6
    for case, errors in report.items():
        assert errors["grad_scale"] > 1e-3, case  # the case has non-trivial gradients
        assert errors["loss_error"] < 1e-12, case
        assert errors["grad_error"] < 1e-12, case
