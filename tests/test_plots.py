"""Seed-sweep pictures (reporting/plots.py): reading training logs, the epochs selection kept, and the
training-curve and bar-chart PNGs, on hand-made logs and aggregates."""
import json

import matplotlib.image
import numpy as np
import pytest
from matplotlib.collections import PathCollection

from reporting.plots import (
    PlotInputError,
    TrainLogError,
    metric_bars_figure,
    panel_titles,
    plot_metric_bars,
    plot_training_curves,
    read_train_log,
    selected_epochs,
    training_curves_figure,
)
from utils.errors import UserError
from utils.eval_metrics import METRIC_KEYS

DHHN_TERMS = ("bce_audio", "bce_visual", "bce_global", "guide_audio", "guide_visual", "rmse")


def epoch_record(epoch, saved, terms=DHHN_TERMS, score=0.5):
    """One line of a `_train_log.jsonl` as modes/train.py writes it."""
    return {"epoch": epoch, "losses": {term: 1.0 / (epoch + i) for i, term in enumerate(terms)},
            "val": {key: score + 0.01 * epoch for key in METRIC_KEYS}, "saved": list(saved), "seconds": 12.5}


def dhhn_log(terms=DHHN_TERMS, score=0.5):
    saves = [("audio", "visual", "overall"), ("visual",), ("audio", "overall"), ()]
    return [epoch_record(epoch, saved, terms, score) for epoch, saved in enumerate(saves, start=1)]


def write_log(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def aggregate(values):
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "values": values.tolist()}


def read_png(path):
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return image


def test_selected_epochs_keeps_the_last_save_of_each_role():
    kept = selected_epochs(dhhn_log())
    assert kept == {"audio": 3, "visual": 2, "overall": 3}
    assert selected_epochs([epoch_record(1, ()), epoch_record(2, ("final",))]) == {"final": 2}
    assert "overall" not in selected_epochs([epoch_record(1, ("audio",)), epoch_record(2, ("audio",))])


def test_read_train_log_round_trip(tmp_path):
    records = dhhn_log()
    assert read_train_log(write_log(tmp_path / "DHHN_train_log.jsonl", records)) == records


def test_read_train_log_names_the_file_and_line_of_a_broken_line(tmp_path):
    path = tmp_path / "DHHN_train_log.jsonl"
    lines = [json.dumps(record) for record in dhhn_log()]
    lines[2] = lines[2][:40]   # a line cut short
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TrainLogError, match=r"DHHN_train_log\.jsonl, line 3: not JSON") as error:
        read_train_log(str(path))
    assert isinstance(error.value, ValueError) and isinstance(error.value, UserError)


@pytest.mark.parametrize("line, problem", [
    ("[1, 2]", "not an epoch record"),
    ('{"epoch": 1, "losses": {}, "val": {}}', "without saved"),
    ('{"epoch": 0, "losses": {}, "val": {}, "saved": []}', "positive integer"),
    ('{"epoch": 1, "losses": {"rmse": "x"}, "val": {}, "saved": []}', "'losses' must map"),
])
def test_read_train_log_refuses_lines_that_are_not_epoch_records(tmp_path, line, problem):
    with pytest.raises(TrainLogError, match=f"line 1: .*{problem}"):
        read_train_log(_write(tmp_path / "log.jsonl", line + "\n"))


def test_read_train_log_refuses_epochs_out_of_order(tmp_path):
    path = write_log(tmp_path / "log.jsonl", [epoch_record(2, ()), epoch_record(1, ())])
    with pytest.raises(TrainLogError, match="line 2: epoch 1 follows epoch 2"):
        read_train_log(path)


@pytest.mark.parametrize("text", ["", "\n\n"])
def test_read_train_log_refuses_an_empty_file(tmp_path, text):
    with pytest.raises(TrainLogError, match=r"log\.jsonl: empty training log"):
        read_train_log(_write(tmp_path / "log.jsonl", text))


def test_read_train_log_names_a_missing_file(tmp_path):
    with pytest.raises(TrainLogError, match="cannot read training log .*nowhere.jsonl"):
        read_train_log(str(tmp_path / "nowhere.jsonl"))


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_panels_are_the_union_of_the_loss_terms_then_the_metrics():
    runs = {"seed 1": dhhn_log(), "seed 2 (no MGN)": dhhn_log(terms=("bce_audio", "bce_visual", "bce_global")),
            "seed 3 (pseudo)": dhhn_log(terms=("bce_audio", "pseudo_audio"))}
    assert panel_titles(runs) == ["loss bce_audio", "loss bce_visual", "loss bce_global", "loss guide_audio",
                                  "loss guide_visual", "loss rmse", "loss pseudo_audio", "val Seg. Type@AV",
                                  "val Eve. Type@AV", "val Seg. Audio", "val Seg. Visual"]
    assert panel_titles(runs, metrics=("evt_av",))[-1] == "val Eve. Audio-Visual"
    fig = training_curves_figure(runs, "DHHN, 3 seeds")
    assert [ax.get_title() for ax in fig.axes] == panel_titles(runs)


def test_training_curves_mark_the_selected_epochs_in_the_run_colour():
    runs = {"seed 1": dhhn_log(), "seed 2": dhhn_log(score=0.6)}
    fig = training_curves_figure(runs, "DHHN", metrics=("seg_type", "seg_audio"))
    colours = {}
    for ax in fig.axes:
        for line in ax.lines:
            colours.setdefault(line.get_label().split(":")[0], set()).add(line.get_color())
    assert all(len(found) == 1 for found in colours.values()) and set(colours) == {"seed 1", "seed 2"}
    metric_ax = fig.axes[-1]   # val Seg. Audio
    marks = {line.get_label(): (line.get_marker(), list(line.get_xdata()), list(line.get_ydata()))
             for line in metric_ax.lines if line.get_linestyle() == "None"}
    assert marks["seed 1: selected audio"] == ("^", [3], [pytest.approx(53.0)])
    assert marks["seed 2: selected visual"] == ("s", [2], [pytest.approx(62.0)])
    assert marks["seed 1: selected overall"][:2] == ("o", [3])
    legend_labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert legend_labels == ["seed 1", "seed 2", "selected: audio", "selected: visual", "selected: overall"]


def test_plot_training_curves_writes_a_png(tmp_path):
    runs = {"seed 1": dhhn_log(), "seed 2 (no MGN)": dhhn_log(terms=("bce_audio", "bce_visual", "bce_global"))}
    out = tmp_path / "curves" / "dhhn.png"
    assert plot_training_curves(runs, str(out), "DHHN, 2 seeds") == str(out)
    height, width = read_png(str(out)).shape[:2]
    assert 3 * 260 < height <= 3 * 260 + 120 and width == 4 * 340   # 2 loss rows + 1 metric row, 4 columns
    single = plot_training_curves({"seed 1": [epoch_record(1, ("final",))]}, str(tmp_path / "one.png"), "MA",
                                  metrics=("seg_type",))
    assert read_png(single).shape[0] > 200
    assert [p.name for p in out.parent.iterdir()] == ["dhhn.png"]   # no temp file left


def visible_ticks(ax):
    low, high = ax.get_xlim()
    return [float(tick) for tick in ax.get_xticks() if low <= tick <= high]


def curve_lines(ax):
    """The runs' curves of a panel (the selection marks are lines without a line style)."""
    return [line for line in ax.lines if line.get_linestyle() != "None"]


@pytest.mark.parametrize("epochs", [1, 2, 3])
def test_short_runs_draw_a_dot_per_epoch_on_integer_ticks(epochs):
    runs = {"seed 1": [epoch_record(epoch, ("overall",) if epoch == 1 else ()) for epoch in range(1, epochs + 1)],
            "seed 2": [epoch_record(epoch, (), score=0.6) for epoch in range(1, epochs + 1)]}
    fig = training_curves_figure(runs, "HAN", metrics=("seg_type",))
    for ax in fig.axes:
        assert visible_ticks(ax) == list(range(1, epochs + 1)), ax.get_title()
        lines = curve_lines(ax)
        assert len(lines) == 2
        # a one-point line draws nothing without a marker
        assert all(line.get_marker() == "o" and line.get_markersize() > 0 for line in lines)
        assert all(list(line.get_xdata()) == list(range(1, epochs + 1)) for line in lines)
    assert all(handle.get_marker() == "o" for handle in fig.legends[0].legend_handles[:2])


def test_long_runs_draw_plain_lines_on_integer_ticks():
    runs = {"seed 1": [epoch_record(epoch, ("audio",) if epoch == 40 else ()) for epoch in range(1, 61)]}
    fig = training_curves_figure(runs, "DHHN", metrics=("seg_type",))
    for ax in fig.axes:
        ticks = visible_ticks(ax)
        assert 3 <= len(ticks) <= 10 and all(tick == int(tick) for tick in ticks)
        assert [line.get_marker() for line in curve_lines(ax)] == ["None"]
    # the selected epoch keeps its marker
    assert [line.get_marker() for line in fig.axes[-1].lines if line.get_linestyle() == "None"] == ["^"]


def test_a_long_title_is_wrapped_to_the_figure_and_gets_room():
    runs = {"seed 1": [epoch_record(1, ("final",))]}
    title = "MA, seed 1: test split, synthetic LLP (data/synthetic), extra flags: " + " ".join(["--epochs 3"] * 12)
    short = training_curves_figure(runs, "MA", metrics=("seg_type",))
    fig = training_curves_figure(runs, title, metrics=("seg_type",))
    text = fig._suptitle.get_text()
    assert text.replace("\n", " ") == title and text.count("\n") >= 1
    assert fig.get_figheight() > short.get_figheight()
    fig.canvas.draw()
    box = fig._suptitle.get_window_extent()
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width   # it fits the figure


def test_training_curves_name_the_run_and_metric_that_is_missing():
    broken = dhhn_log()
    del broken[1]["val"]["evt_type"]
    with pytest.raises(PlotInputError, match="run 'seed 2', epoch 2: no val metric 'evt_type'") as error:
        training_curves_figure({"seed 1": dhhn_log(), "seed 2": broken}, "DHHN")
    assert isinstance(error.value, ValueError)
    with pytest.raises(PlotInputError, match="no training runs"):
        training_curves_figure({}, "DHHN")
    with pytest.raises(PlotInputError, match="run 'seed 1' has no epoch records"):
        training_curves_figure({"seed 1": []}, "DHHN")


def sweep_rows():
    return {
        "DHHN (published flags, refined labels, dual best-audio + best-visual)": {
            "seg_type": aggregate([60.1, 61.4, 62.0]), "evt_type": aggregate([55.2, 56.0, 54.8])},
        "HAN": {"seg_type": aggregate([54.0, 55.5, 53.1]), "evt_type": aggregate([49.9, 50.2, 51.0])},
        "DHHN without MGNs (one seed)": {"seg_type": aggregate([58.3]), "evt_type": aggregate([52.7])},
    }


def test_bar_chart_with_a_baseline_and_a_single_seed_row(tmp_path):
    rows = sweep_rows()
    fig = metric_bars_figure(rows, "3 seeds", baseline="HAN")
    ax = fig.axes[0]
    assert [patch.get_height() for patch in ax.patches] == pytest.approx(
        [rows[name][key]["mean"] for name in rows for key in ("seg_type", "evt_type")])
    texts = [text.get_text() for text in ax.texts]
    assert texts == [f"{rows[name][key]['mean']:.1f}" for name in rows for key in ("seg_type", "evt_type")]
    # one dot per seed, error bars only for the rows with more than one seed
    assert sum(len(collection.get_offsets()) for collection in ax.collections
               if isinstance(collection, PathCollection)) == 3 + 3 + 3 + 3 + 1 + 1
    assert len(ax.containers) == 3 + 4   # 3 bar containers, 4 error bars (HAN and DHHN, 2 metrics)
    [baseline] = [collection for collection in ax.collections if collection.get_label() == "baseline: HAN"]
    assert baseline.get_linestyle()[0][1] is not None   # dashed
    segments = baseline.get_segments()   # one per group, across its bars, at the baseline's mean
    assert [segment[0][1] for segment in segments] == pytest.approx([rows["HAN"][key]["mean"]
                                                                     for key in ("seg_type", "evt_type")])
    # flat: pytest >= 9.2 refuses nested sequences in approx
    assert [x for segment in segments for x in (segment[0][0], segment[1][0])] == pytest.approx([-0.4, 0.4, 0.6, 1.4])
    legend_labels = [text.get_text().replace("\n", " ") for text in fig.legends[0].get_texts()]
    assert legend_labels == list(rows) + ["baseline: HAN"]

    out = plot_metric_bars(rows, str(tmp_path / "bars.png"), "3 seeds", baseline="HAN")
    height, width = read_png(out).shape[:2]
    assert 380 <= height <= 700 and 400 <= width <= 800


def test_bar_chart_of_one_single_seed_row(tmp_path):
    rows = {"DHHN": {key: aggregate([100 * 0.5]) for key in METRIC_KEYS}}
    out = plot_metric_bars(rows, str(tmp_path / "one.png"), "", metrics=METRIC_KEYS)
    assert read_png(out).shape[1] >= 450


def test_bar_chart_names_the_row_and_metric_that_is_missing(tmp_path):
    rows = sweep_rows()
    del rows["HAN"]["evt_type"]
    with pytest.raises(PlotInputError, match="row 'HAN' has no metric 'evt_type'") as error:
        plot_metric_bars(rows, str(tmp_path / "bars.png"), "sweep")
    assert isinstance(error.value, ValueError)
    assert not (tmp_path / "bars.png").exists()
    with pytest.raises(PlotInputError, match="baseline 'VALOR' is not a row"):
        metric_bars_figure(sweep_rows(), "sweep", baseline="VALOR")
