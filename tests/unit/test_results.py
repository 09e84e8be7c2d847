import json

from launcher.runtime.results import format_table, write_results


def test_table_has_a_column_per_metric_and_a_row_per_evaluation():
    table = format_table([
        {"step": 0, "metrics": {"accuracy": 0.5}},
        {"step": 100, "metrics": {"accuracy": 0.98765, "auc": float("nan")}},
    ])
    header, rule, first, second = table.splitlines()
    assert [c.strip() for c in header.split("|")] == ["step", "accuracy", "auc"]
    assert set(rule) <= {"-", "+"}
    assert [c.strip() for c in first.split("|")] == ["0", "0.5000", "-"]
    assert [c.strip() for c in second.split("|")] == ["100", "0.9877", "nan"]

def test_results_hold_the_summary_and_every_evaluation(tmp_path):
    path = tmp_path / "results.json"
    evaluations = [{"step": s, "metrics": {"m": s / 10}} for s in (0, 50, 100)]
    write_results(path, {"task": "t"}, evaluations)
    assert json.loads(path.read_text()) == {"task": "t", "evaluations": evaluations}
