"""The Soft Attention benchmark runs end to end on the cpu flavour and prints both models and the ratios."""

import torch

from medtrain.bench_attention import COMPARISONS, PLAIN, SAME_TRUNK, SOFT_ATTENTION, main


def test_smoke_run_prints_both_models_and_their_ratios(capsys):
    threads = torch.get_num_threads()
    try:
        main(["--flavour", "cpu", "--size", "32", "--batch", "2", "--warmup", "1", "--rounds", "1", "--steps", "1",
              "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    for name in (PLAIN, SOFT_ATTENTION, SAME_TRUNK):
        assert any(row.startswith(f"| {name} | ") for row in rows), name
    for label, _, _ in COMPARISONS:
        (row,) = [row for row in rows if row.startswith(f"| {label} | ")]
        ratio = float(row.split(" | ")[1])
        assert ratio > 0
