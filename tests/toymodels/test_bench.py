from toymodels.bench import CASES, flop_counts, summarise


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
