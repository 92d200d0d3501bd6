"""Figures: the data they draw, orientation of MR scatter plots, atomic PNG writing."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from deepmr_kipoi.report import figures as plots  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _glob():
    rows = []
    for e in ("a", "b", "c"):
        for o in ("a", "b", "c"):
            if e == o:
                continue
            est = {"a": 1.0, "b": -0.5, "c": 0.1}[e] * (2 if o == "c" else 1)
            rows.append(
                {
                    "exposure": e,
                    "outcome": o,
                    "method": "ivw",
                    "estimate": est,
                    "significant": abs(est) > 0.4,
                }
            )
    return pd.DataFrame(rows)


def test_effect_matrix_places_every_pair_and_leaves_diagonal_empty():
    mat = plots.effect_matrix(_glob(), "ivw")
    assert list(mat.index) == ["a", "b", "c"] and list(mat.columns) == ["a", "b", "c"]
    assert mat.loc["a", "c"] == 2.0 and mat.loc["b", "a"] == -0.5 and mat.loc["c", "b"] == 0.1
    assert np.isnan(mat.loc["a", "a"]) and np.isnan(mat.loc["c", "c"])


def test_heatmap_marks_exactly_the_significant_cells(tmp_path):
    glob = _glob()
    fig = plots.global_heatmap(glob, "ivw")
    ax = fig.axes[0]
    stars = [t for t in ax.texts if t.get_text() == "*"]
    assert len(stars) == int(glob["significant"].sum())
    mat = plots.effect_matrix(glob, "ivw")
    cells = {
        (mat.index[int(round(t.get_position()[1]))], mat.columns[int(round(t.get_position()[0]))])
        for t in stars
    }
    expected = set(
        zip(glob.loc[glob.significant, "exposure"], glob.loc[glob.significant, "outcome"])
    )
    assert cells == expected
    path = plots.save(fig, tmp_path / "h.png")
    assert path.read_bytes()[:8] == PNG
    assert [p.name for p in tmp_path.iterdir()] == ["h.png"]  # no temporary left


def test_mr_scatter_orients_instruments_and_draws_both_fits():
    bx = np.array([-2.0, 1.0, -0.5, 3.0])
    by = np.array([-1.0, 0.4, 0.3, 1.5])
    se = np.full(4, 0.1)
    fig = plots.mr_scatter(bx, se, by, se, ivw=0.5, egger=(0.4, 0.1), exposure="X", outcome="Y")
    ax = fig.axes[0]
    points = ax.lines[0]
    np.testing.assert_allclose(points.get_xdata(), [2.0, 1.0, 0.5, 3.0])
    np.testing.assert_allclose(points.get_ydata(), [1.0, 0.4, -0.3, 1.5])
    ivw, egger = [ln for ln in ax.lines[1:] if len(ln.get_xdata()) == 50]
    x = ivw.get_xdata()
    np.testing.assert_allclose(ivw.get_ydata(), 0.5 * x)
    np.testing.assert_allclose(egger.get_ydata(), 0.1 + 0.4 * x)


def test_forest_calibration_truth_and_compare_render(tmp_path):
    fig = plots.forest(
        ["s1", "s2", "s3"],
        np.array([0.1, np.nan, 0.3]),
        np.array([0.0, np.nan, 0.1]),
        np.array([0.2, np.nan, 0.5]),
        pooled=(0.2, 0.1, 0.3),
        prediction=(-0.1, 0.5),
    )
    assert plots.save(fig, tmp_path / "f.png").stat().st_size > 1000
    grid = np.linspace(0.01, 0.99, 20)
    fig = plots.calibration_curves([("x, before", grid, grid**2), ("x, after", grid, grid)])
    assert len(fig.axes[0].lines) == 3
    plots.save(fig, tmp_path / "c.png")
    fig = plots.truth_scatter(
        np.array([1.0, 0.0]),
        np.array([0.9, 0.1]),
        np.array([0.7, -0.1]),
        np.array([1.1, 0.3]),
        ["a->b", "b->a"],
    )
    plots.save(fig, tmp_path / "t.png")
    m1 = plots.effect_matrix(_glob(), "ivw")
    fig = plots.compare_figure([("run1", m1), ("run2", -m1)], method="ivw")
    offsets = [c for ax in fig.axes for c in ax.collections if c.get_offsets().shape[0] == 6]
    assert offsets, "the scatter of run2 against run1 draws all 6 shared pairs"
    np.testing.assert_allclose(offsets[0].get_offsets()[:, 1], -offsets[0].get_offsets()[:, 0])
    plots.save(fig, tmp_path / "cmp.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "cmp.png", "f.png", "t.png"]


def test_save_leaves_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "x.png"
    target.write_bytes(b"old")
    fig = plots.forest(["s"], np.array([1.0]), np.array([0.5]), np.array([1.5]))

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(type(target), "write_bytes", boom)
    with pytest.raises(OSError):
        plots.save(fig, target)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_compare_figure_labels_do_not_overlap():
    m1 = plots.effect_matrix(_glob(), "ivw")
    fig = plots.compare_figure([("run1", m1), ("run2", -m1), ("run3", m1 * 2)], method="ivw")
    fig.canvas.draw()
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert len(heatmaps) == 3
    # the rows are shared: only the first heatmap names them, so none sits on its left neighbour
    assert [t.get_text() for t in heatmaps[0].get_yticklabels()] == list(m1.index)
    assert all(not t.get_text() for ax in heatmaps[1:] for t in ax.get_yticklabels())
    renderer = fig.canvas.get_renderer()
    for left, right in zip(heatmaps, heatmaps[1:]):
        labels = [t.get_window_extent(renderer) for t in right.get_yticklabels() if t.get_text()]
        assert not any(b.overlaps(left.get_window_extent(renderer)) for b in labels)
    # the scatter titles stay clear of the heatmaps' rotated outcome labels above them
    ticks = [t.get_window_extent(renderer) for ax in heatmaps for t in ax.get_xticklabels()]
    scatters = [ax for ax in fig.axes if not ax.images and ax.get_title()]
    assert len(scatters) == 2
    for ax in scatters:
        title = ax.title.get_window_extent(renderer)
        assert not any(title.overlaps(b) for b in ticks), ax.get_title()
    plt.close(fig)


@pytest.mark.skipif(
    "fork" not in __import__("multiprocessing").get_all_start_methods(), reason="needs fork"
)
def test_pair_figures_drawn_in_a_second_process_equal_those_drawn_serially(tmp_path, monkeypatch):
    from deepmr_kipoi import pipeline
    from tests.test_report import N_SEQ, _local_table, with_verdicts

    local = _local_table()
    glob = with_verdicts(pipeline.global_effects(local, N_SEQ))
    kept = plots.DetailInputs.none(local)
    made = {}
    for mode, start in (("serial", lambda job: None), ("forked", plots._Forked)):
        monkeypatch.setattr(plots, "_forked", start)
        figs = plots.make_figures(tmp_path / mode, glob, kept)
        made[mode] = [
            (f.path.relative_to(tmp_path / mode), f.title, f.section, f.pair, _content(f.path))
            for f in figs
        ]
    assert sum(f[2] == "pair" for f in made["serial"]) >= 2  # pairs drawn by the second process
    assert made["forked"] == made["serial"]  # same files, order and contents

    def broken(job):
        return plots._Forked(lambda: 1 / 0)

    monkeypatch.setattr(plots, "_forked", broken)
    with pytest.raises(RuntimeError, match="second process failed: ZeroDivisionError"):
        plots.make_figures(tmp_path / "broken", glob, kept)


def _content(path):
    """A figure file's bytes; an SVG's without the date matplotlib stamps into it."""
    data = path.read_bytes()
    if path.suffix == ".svg":
        data = b"\n".join(line for line in data.splitlines() if b"<dc:date>" not in line)
    return data
