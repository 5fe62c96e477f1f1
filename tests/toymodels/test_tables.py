import numpy as np

from toymodels.tables import final_rows, held_out, index_runs, select

ROWS = [{"run": "a", "seed": 0, "step": s, "task": t, "metric": "acc", "value": v}
        for t in ("sort", "train") for s, v in ((10, 0.5), (0, 0.1), (20, 0.9))] + \
       [{"run": "b", "seed": 1, "step": 5, "task": "sort", "metric": "acc", "value": 0.3}]


def test_select_matches_every_given_column():
    assert [r["value"] for r in select(ROWS, run="a", task="sort", step=10)] == [0.5]
    assert select(ROWS, run="c") == []


def test_final_rows_take_the_largest_step_per_run_task_metric():
    got = {(r["run"], r["task"]): (r["step"], r["value"]) for r in final_rows(ROWS)}
    assert got == {("a", "sort"): (20, 0.9), ("a", "train"): (20, 0.9), ("b", "sort"): (5, 0.3)}


def test_held_out_drops_the_training_loss_rows():
    assert {r["task"] for r in held_out(ROWS)} == {"sort"}


def test_index_runs_sorts_curves_by_step_and_keeps_tags():
    runs = index_runs(ROWS)
    steps, values = runs["a"]["curves"][("sort", "acc")]
    np.testing.assert_array_equal(steps, [0, 10, 20])
    np.testing.assert_array_equal(values, [0.1, 0.5, 0.9])
    assert runs["b"]["tags"] == {"run": "b", "seed": 1}
