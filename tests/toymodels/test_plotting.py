import subprocess
import sys

import numpy as np
import pytest

from toymodels import plotting


def test_importing_plotting_leaves_the_backend_alone():
    code = ("import matplotlib; matplotlib.use('svg'); import toymodels.plotting; "
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_redrawn_figures_are_byte_identical(tmp_path, monkeypatch):
    def draw(path):
        fig, axes = plotting.figure()
        axes[0, 0].plot([0, 1, 2], [1.0, 0.5, 0.25], label="loss")
        axes[0, 0].legend()
        return plotting.save(fig, path, pdf=True)
    first = [p.read_bytes() for p in draw(tmp_path / "a")]
    monkeypatch.setattr("time.time", lambda: 2e9)     # a later clock must not show in the files
    second = [p.read_bytes() for p in draw(tmp_path / "b")]
    assert len(first) == 2 and first == second


ROWS = [{"x": 2, "mean": 0.5, "lo": 0.4, "hi": 0.6, "n": 3, "values": "0.45 0.5 0.55"},
        {"x": 1, "mean": 0.2, "lo": 0.1, "hi": 0.3, "n": 3, "values": "0.1 0.2 0.3"}]


def test_band_rows_sorts_by_x_and_draws_per_seed_points():
    fig, axes = plotting.figure()
    ax = axes[0, 0]
    line = plotting.band_rows(ax, ROWS, "x", label="arm")
    np.testing.assert_array_equal(line.get_xdata(), [1, 2])
    np.testing.assert_array_equal(line.get_ydata(), [0.2, 0.5])
    assert line.get_label() == "arm (n=3)"
    (points,) = ax.collections[1:]          # [0] is the band
    assert len(points.get_offsets()) == 6


def test_no_points_without_per_seed_values_or_with_many_seeds():
    fig, axes = plotting.figure()
    rows = [{k: v for k, v in r.items() if k != "values"} for r in ROWS]
    plotting.band_rows(axes[0, 0], rows, "x")
    plotting.errorbar_rows(axes[0, 0], [0, 1], [dict(r, n=6, values="") for r in ROWS], fmt="o")
    assert len(axes[0, 0].collections) == 2   # the band and the error bars' line collection


def test_errorbar_rows_bars_span_lo_to_hi():
    fig, axes = plotting.figure()
    bars = plotting.errorbar_rows(axes[0, 0], [0, 1], ROWS, fmt="o")
    segs = bars.lines[2][0].get_segments()
    assert [tuple(s[:, 1]) for s in segs] == [(0.4, 0.6), (0.1, 0.3)]


def test_grid_hides_unused_panels():
    fig, axes = plotting.grid(5, ncols=3)
    assert len(axes) == 6 and [ax.get_visible() for ax in axes] == [True] * 5 + [False]


def test_seed_values_reads_one_or_many():
    assert plotting.seed_values({"values": 0.5}) == [0.5]
    assert plotting.seed_values({"values": "0.1 0.2"}) == [0.1, 0.2]
    assert plotting.seed_values({}) == []


def test_attention_patterns_draws_one_labelled_panel_per_head(tmp_path):
    plotting.use_file_backend()
    p_HTS = np.random.default_rng(0).dirichlet(np.ones(5), size=(3, 5))
    fig = plotting.attention_patterns(p_HTS, tokens=["BOS", "a", "b", "c", "d"], title="layer 0", ncols=2)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.images]
    assert len(panels) == 3 and [ax.get_title() for ax in panels] == ["head 0", "head 1", "head 2"]
    assert [t.get_text() for t in panels[1].get_xticklabels()] == ["BOS", "a", "b", "c", "d"]
    assert [t.get_text() for t in panels[1].get_yticklabels()] == ["BOS", "a", "b", "c", "d"]
    np.testing.assert_array_equal(panels[2].images[0].get_array(), p_HTS[2])
    assert fig.get_suptitle() == "layer 0"
    assert all(p.stat().st_size for p in plotting.save(fig, tmp_path / "attn"))


def test_attention_patterns_refuses_a_batch_or_mismatched_tokens():
    with pytest.raises(ValueError, match=r"pass one input's, e.g. pattern\[0\]"):
        plotting.attention_patterns(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="tokens has 3 labels for a 4 x 4 pattern"):
        plotting.attention_patterns(np.zeros((2, 4, 4)), tokens=["a", "b", "c"])


def test_no_band_from_fewer_than_three_seeds():
    fig, axes = plotting.figure()
    two = [dict(r, n=2, values=" ".join(r["values"].split()[:2])) for r in ROWS]
    plotting.band_rows(axes[0, 0], two, "x")
    (points,) = axes[0, 0].collections       # the per-seed points only, no band
    assert len(points.get_offsets()) == 4


def test_no_error_bar_from_fewer_than_three_seeds():
    fig, axes = plotting.figure()
    rows = [ROWS[0], dict(ROWS[1], n=2, values="0.1 0.3")]
    bars = plotting.errorbar_rows(axes[0, 0], [0, 1], rows, fmt="o")
    segs = bars.lines[2][0].get_segments()
    assert [tuple(s[:, 1]) for s in segs] == [(0.4, 0.6), (0.2, 0.2)]   # the two-seed row: no extent


def test_log_x_labels_decades_only():
    fig, axes = plotting.figure()
    ax = axes[0, 0]
    ax.plot([2.7e3, 6.7e4], [0, 1])
    plotting.log_x(ax)
    fig.canvas.draw()
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()] == []
    assert any(t.get_text() for t in ax.get_xticklabels())   # 10^4 keeps its label
    plotting.plt.close(fig)


@pytest.mark.parametrize("env, suffixes", [(None, [".png", ".pdf"]), ("1", [".png", ".pdf"]), ("0", [".png"])])
def test_save_writes_the_pdf_unless_the_environment_turns_it_off(tmp_path, monkeypatch, env, suffixes):
    if env is None:
        monkeypatch.delenv("TOYMODELS_FIGURE_PDF", raising=False)
    else:
        monkeypatch.setenv("TOYMODELS_FIGURE_PDF", env)
    fig, _ = plotting.figure()
    assert [p.suffix for p in plotting.save(fig, tmp_path / "f")] == suffixes
    fig, _ = plotting.figure()
    assert [p.suffix for p in plotting.save(fig, tmp_path / "g", pdf=False)] == [".png"]   # an explicit choice wins
