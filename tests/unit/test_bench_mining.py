"""The mining benchmark times like against like: on the same embeddings, our loss equals the per-anchor
loop's (our definitions) in every mode, and PML's where its definition is ours."""

import pytest
import torch

from facetrain.bench_mining import MODES, compare, ours, per_anchor_loop, report

pytest.importorskip("pytorch_metric_learning")


def small_batch(dtype=torch.float64):
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(16).repeat_interleave(4)
    return torch.nn.functional.normalize(torch.randn(64, 16, generator=generator, dtype=dtype), dim=1), labels


@pytest.mark.parametrize("mining", MODES)
def test_the_loop_uses_our_definitions(mining):
    emb, labels = small_batch()
    assert ours(emb, labels, mining).item() == pytest.approx(per_anchor_loop(emb, labels, mining).item(), rel=1e-12)


def test_a_small_run_reports_pml_equal_for_batch_hard_and_all(capsys):
    emb, labels = small_batch(torch.float32)
    results = compare(emb, labels, rounds=2, loop_rounds=1)
    report(results, "64 x 16", 2, 1)  # asserts equality with PML where the definitions are equal
    assert all(len(results[mining, "loop"][0]) == 1 and len(results[mining, "ours"][0]) == 2 for mining in MODES)
    semi_hard = [results["semi_hard", name][1][0] for name in ("ours", "pml")]
    assert semi_hard[0] != pytest.approx(semi_hard[1], rel=1e-3)  # another definition, reported as such
    assert "equal to PML (checked)" in capsys.readouterr().out
