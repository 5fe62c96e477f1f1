from toymodels.bench import CASES, summarise
from toymodels.flops import flop_counts


def test_flop_counts_follow_the_peer_conventions():
    fl = flop_counts(L=2, d=64, V=32, T=32, params=1000)
    assert fl["flops_per_token_6N"] == 6000
    assert fl["flops_per_token_detailed"] == 6 * (2 * 12 * 64 * 64 + 64 * 32) + 3 * 2 * 4 * 32 * 64


def test_summarise_gives_one_markdown_row_per_case_and_implementation():
    rows = [{"case": "tiny", "impl": "toymodels", "tokens_per_s": t, "step_ms": 2.0, "compile_s": 1.0, "mfu_6N": 0.1}
            for t in (100.0, 300.0, 200.0)]
    table = summarise(rows).splitlines()
    assert len(table) == 3 and "tiny" in CASES
    assert table[2].startswith("| tiny | toymodels | 200 (100-300) | 2.0 | 1.0 | 10.0 % | 3 |")


def test_gpu_suite_runs_at_tiny_sizes_on_cpu(tmp_path):
    """``--suite gpu`` end to end at micro sizes: fp32 and bf16 ensembles train (loss finite,
    below the uniform loss), the torch loop says why it was skipped, the file is written."""
    import json
    import math

    from toymodels.bench import main

    out = tmp_path / "suite.json"
    main(["--suite", "gpu", "--runs", "2", "--dims", "1,16,2,8,4,8", "--steps", "4", "--studies", "none",
          "--peer", str(tmp_path / "missing.py"), "--peak-gflops", "100", "--out", str(out)])
    res = json.loads(out.read_text())
    for name, precision in (("ensemble", "fp32"), ("ensemble_bf16", "bf16")):
        rec = res[name]
        assert rec["runs"] == 2 and rec["precision"] == precision and rec["tokens_per_s"] > 0
        assert math.isfinite(rec["final_loss"]) and rec["final_loss"] < math.log(8) + 0.5
        assert 0 < rec["mfu_cpu_fp32_gemm"] < 1
    assert "no peer script" in res["torch_loop"]["skipped"]
    assert res["studies"] == [] and res["peaks_tflops"] == {}


def test_gpu_suite_records_a_study_cut_off_at_its_limit():
    from toymodels.bench_gpu import study_times
    from toymodels.flops import device_peaks

    (row,) = study_times("smoke", 0.5, ["myopia"])
    assert (row["study"], row["completed"], row["returncode"]) == ("myopia", False, None)
    assert device_peaks("NVIDIA H200")["bf16"] == 989.4 and device_peaks("Intel CPU") == {}


def test_gpu_suite_rejects_bad_arguments(capsys):
    import pytest

    from toymodels.bench import main

    for argv, words in ((["--runs", "0"], "--runs=0"), (["--dims", "2,128"], "six positive numbers"),
                        (["--studies", "nope"], "unknown nope")):
        with pytest.raises(SystemExit) as e:
            main(["--suite", "gpu", *argv])
        assert words in str(e.value) + capsys.readouterr().err
