from toymodels import demo
from toymodels.results import read_rows


def test_demo_writes_table_config_and_figure(tmp_path, capsys):
    demo.main(["--out", str(tmp_path), "--steps", "24"])
    rows = read_rows(tmp_path / "metrics.csv")
    assert {r["run"] for r in rows} == {"seed0", "seed1", "seed2"}
    assert {r["task"] for r in rows} == {"markov", "sort", "train"}
    assert (tmp_path / "config.json").stat().st_size > 100
    assert (tmp_path / "loss.png").stat().st_size > 10_000
    assert "final accuracy" in capsys.readouterr().out
