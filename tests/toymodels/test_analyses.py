import pytest

from toymodels.analyses import AnalysisCache


def test_rows_are_computed_once_and_read_back(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return [{"layer": 0, "value": 0.5}, {"layer": 1, "value": 0.25}]
    cache = AnalysisCache(tmp_path, "probes")
    first = cache.rows("run0", {"lr": 1e-3}, compute)
    second = AnalysisCache(tmp_path, "probes").rows("run0", {"lr": 1e-3}, compute)
    assert first == second == [{"layer": 0, "value": 0.5}, {"layer": 1, "value": 0.25}]
    assert len(calls) == 1


def test_a_changed_config_recomputes(tmp_path):
    cache = AnalysisCache(tmp_path, "probes")
    cache.put("run0", {"lr": 1e-3}, [{"value": 1.0}])
    assert cache.get("run0", {"lr": 3e-3}) is None
    assert cache.missing({"run0": {"lr": 1e-3}, "run1": {"lr": 1e-3}}) == ["run1"]
    assert cache.rows("run0", {"lr": 3e-3}, lambda: [{"value": 2.0}]) == [{"value": 2.0}]


def test_a_damaged_table_is_recomputed(tmp_path):
    cache = AnalysisCache(tmp_path, "probes")
    cache.put("run0", "cfg", [{"value": 1.0}, {"value": 2.0}])
    table = tmp_path / "analyses" / "probes" / "run0.csv"
    table.write_text(table.read_text().splitlines()[0] + "\n1.0\n")   # cut at a line boundary
    assert cache.get("run0", "cfg") is None
    table.unlink()
    assert cache.get("run0", "cfg") is None


def test_keys_cannot_leave_the_analysis_folder(tmp_path):
    with pytest.raises(ValueError, match="analysis key"):
        AnalysisCache(tmp_path, "probes").get("../x", "cfg")


def test_all_rows_reads_every_vouched_entry_in_key_order(tmp_path):
    cache = AnalysisCache(tmp_path, "probes")
    cache.put("b", "cfg", [{"value": 2.0}])
    cache.put("a", "cfg", [{"value": 1.0}])
    (tmp_path / "analyses" / "probes" / "c.csv").write_text("value\n3.0\n")   # no record: a killed write
    assert cache.all_rows() == [{"value": 1.0}, {"value": 2.0}]
