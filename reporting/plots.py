"""Pictures of a seed sweep: the training curves of one or several runs, and grouped bars of scores
aggregated over seeds.

`read_train_log` reads what a training run writes, `<model_save_dir>/<checkpoint>_train_log.jsonl`
(or `_retrain_log.jsonl`): one JSON object per finished epoch, {"epoch", "losses": {term: mean
loss}, "val": {metric key: fraction}, "saved": [selection roles saved at this epoch], "seconds"}.
`selected_epochs` says which epoch each selection role finally kept (PROTOCOL.md §7: a role's
checkpoint is rewritten whenever its score improves, so the last save wins).

Scores are drawn in percent (x100), as the tables print them. A sweep's runs are often 1-3 epochs
long: every epoch of a short run is a dot (a one-epoch run is then visible at all) and the epoch
axis carries integer ticks only. Rendering uses matplotlib's Agg canvas
directly (no pyplot, no global backend change), as reporting/visualize.py does; every PNG is written
atomically.
"""
import io
import json
import math
import textwrap

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from utils.errors import UserError
from utils.eval_metrics import COLUMN_TITLES, LEVEL_TITLES
from utils.io import atomic_write_bytes

DEFAULT_CURVE_METRICS = ("seg_type", "evt_type", "seg_audio", "seg_visual")
DEFAULT_BAR_METRICS = ("seg_type", "evt_type")
# Okabe-Ito colours (colour-blind safe), one per run or row; after 8, the line style changes
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
LINE_STYLES = ("-", "--", ":", "-.")
# the selection roles of the recipes (DHHN: audio, visual, overall; HAN: overall; MA: final)
ROLE_MARKERS = {"audio": "^", "visual": "s", "overall": "o", "final": "D"}
SPARE_MARKERS = ("v", "P", "X", "*", "h", "p")
PANEL_COLUMNS = 4
PANEL_SIZE = (3.4, 2.6)            # inches per panel of the training curves
BAR_WIDTH = 0.5                    # inches per bar of the bar chart
GROUP_WIDTH = 0.8                  # of the distance between two metric groups, shared by its bars
LEGEND_FONT_SIZE = 8
LEGEND_LINE_HEIGHT = 0.19          # inches per text line of a legend at LEGEND_FONT_SIZE
LEGEND_LABEL_CHARS = 60            # longer row titles are wrapped in the legend
TITLE_FONT_SIZE = 11
TITLE_LINE_HEIGHT = 0.2            # inches per text line of a title at TITLE_FONT_SIZE
# average glyph width of DejaVu Sans, in ems, rounded up so that a wrapped title fits its figure
CHAR_WIDTH_EMS = 0.6
DOT_EPOCHS = 20                    # runs of at most this many epochs draw a dot per epoch; longer, a line
DOT_SIZE = 4
DPI = 100


class TrainLogError(UserError):
    """A training log that cannot be read or is not one; the message names the file and line."""


class PlotInputError(UserError):
    """Input a picture cannot be drawn from (no runs, a missing metric); names the run or row."""


def read_train_log(path):
    """The epoch records of a `_train_log.jsonl` / `_retrain_log.jsonl`, in file order.

    Raises TrainLogError naming the file (and the line) for an unreadable file, a line that is not
    JSON or not an epoch record, epochs out of order, or a file without records.
    """
    records = []
    try:
        with open(path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise TrainLogError(f"{path}, line {number}: not JSON ({error.msg}, column {error.colno})"
                                        ) from None
                problem = _record_problem(record, records[-1]["epoch"] if records else 0)
                if problem:
                    raise TrainLogError(f"{path}, line {number}: {problem}")
                records.append(record)
    except (OSError, UnicodeDecodeError) as error:
        raise TrainLogError(f"cannot read training log {path}: {getattr(error, 'strerror', None) or error}") from None
    if not records:
        raise TrainLogError(f"{path}: empty training log (no epoch records)")
    return records


def _record_problem(record, previous_epoch):
    """What is wrong with one epoch record, or None."""
    if not isinstance(record, dict):
        return f"not an epoch record (a JSON {type(record).__name__}, not an object)"
    missing = [key for key in ("epoch", "losses", "val", "saved") if key not in record]
    if missing:
        return f"epoch record without {', '.join(missing)}"
    epoch = record["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        return f"epoch must be a positive integer, got {epoch!r}"
    if epoch <= previous_epoch:
        return f"epoch {epoch} follows epoch {previous_epoch}"
    for key in ("losses", "val"):
        values = record[key]
        if not isinstance(values, dict) or not all(_is_number(value) for value in values.values()):
            return f"epoch {epoch}: {key!r} must map names to numbers"
    if not isinstance(record["saved"], list) or not all(isinstance(role, str) for role in record["saved"]):
        return f"epoch {epoch}: 'saved' must be a list of role names"
    return None


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def selected_epochs(records):
    """{role: the last epoch whose "saved" holds the role}: the epoch of the checkpoint the run kept
    for each selection role (roles never saved are absent), in the order roles were first saved."""
    kept = {}
    for record in records:
        for role in record["saved"]:
            kept[role] = record["epoch"]
    return kept


def metric_title(key):
    """"seg_type" -> "Seg. Type@AV", as the tables title it; a key of another form is kept as is."""
    level, _, column = key.partition("_")
    if level in LEVEL_TITLES and column in COLUMN_TITLES:
        return f"{LEVEL_TITLES[level]} {COLUMN_TITLES[column]}"
    return key


def loss_terms(runs):
    """Every loss term logged by any run (runs = {label: records}), in the order first seen:
    ablated runs lack some terms, and each term gets a panel."""
    terms = {}
    for records in runs.values():
        for record in records:
            terms.update(dict.fromkeys(record["losses"]))
    return list(terms)


def panel_titles(runs, metrics=DEFAULT_CURVE_METRICS):
    """Titles of the panels of `plot_training_curves`, in drawing order (row by row): a panel per
    loss term of `loss_terms(runs)`, then a panel per val metric of `metrics`."""
    return [f"loss {term}" for term in loss_terms(runs)] + [f"val {metric_title(key)}" for key in metrics]


def style_of(index):
    """(colour, line style) of the index-th run or row."""
    return COLOURS[index % len(COLOURS)], LINE_STYLES[(index // len(COLOURS)) % len(LINE_STYLES)]


def role_markers(roles):
    """{role: marker}; the recipes' roles have fixed markers, any other role takes a spare one."""
    markers, spare = {}, iter(SPARE_MARKERS * (1 + len(roles) // len(SPARE_MARKERS)))
    for role in roles:
        markers[role] = ROLE_MARKERS.get(role) or next(spare)
    return markers


def _check_runs(runs, metrics):
    if not runs:
        raise PlotInputError("no training runs to plot")
    for label, records in runs.items():
        if not records:
            raise PlotInputError(f"run {label!r} has no epoch records")
        for record in records:
            missing = [key for key in metrics if key not in record["val"]]
            if missing:
                raise PlotInputError(f"run {label!r}, epoch {record['epoch']}: no val metric {missing[0]!r}")
    if not metrics and not loss_terms(runs):
        raise PlotInputError("nothing to plot: the runs log no loss terms and no metrics were chosen")


def training_curves_figure(runs, title, metrics=DEFAULT_CURVE_METRICS):
    """The figure of `plot_training_curves`; its visible axes are titled `panel_titles(runs, metrics)`."""
    metrics = tuple(metrics)
    _check_runs(runs, metrics)
    terms = loss_terms(runs)
    columns = min(PANEL_COLUMNS, max(len(terms), len(metrics)))
    loss_rows, metric_rows = math.ceil(len(terms) / columns), math.ceil(len(metrics) / columns)
    roles = list(dict.fromkeys(role for records in runs.values() for role in selected_epochs(records)))
    markers = role_markers(roles)
    # each later role is drawn smaller, on top, so that roles kept at the same epoch all stay visible
    sizes = {role: 9 - 2 * (index % 3) for index, role in enumerate(roles)}
    handles = [Line2D([], [], color=style_of(index)[0], linestyle=style_of(index)[1], label=label,
                      **_dots(records)) for index, (label, records) in enumerate(runs.items())]
    handles += [Line2D([], [], marker=markers[role], markersize=sizes[role], linestyle="none", color="#777777",
                       markeredgecolor="#222222", label=f"selected: {role}") for role in roles]
    legend_columns = min(len(handles), 6)
    legend_height = LEGEND_LINE_HEIGHT * math.ceil(len(handles) / legend_columns) + 0.15
    title = wrap_title(title, PANEL_SIZE[0] * columns) if title else ""
    height = PANEL_SIZE[1] * (loss_rows + metric_rows) + legend_height + TITLE_LINE_HEIGHT * title.count("\n")
    fig = Figure(figsize=(PANEL_SIZE[0] * columns, height), dpi=DPI)
    FigureCanvasAgg(fig)
    grid = fig.subplots(loss_rows + metric_rows, columns, squeeze=False)
    panels = [grid[i // columns, i % columns] for i in range(len(terms))]
    panels += [grid[loss_rows + i // columns, i % columns] for i in range(len(metrics))]
    for ax in grid.flat:
        if not any(ax is panel for panel in panels):
            fig.delaxes(ax)
    titles = panel_titles(runs, metrics)
    for index, (label, records) in enumerate(runs.items()):
        colour, line_style = style_of(index)
        epochs = np.array([record["epoch"] for record in records])
        for term, ax in zip(terms, panels):
            values = np.array([record["losses"].get(term, np.nan) for record in records], dtype=np.float64)
            if not np.isnan(values).all():   # a run without this term draws nothing here
                ax.plot(epochs, values, color=colour, linestyle=line_style, linewidth=1.2, label=label,
                        **_dots(records))
        kept = selected_epochs(records)
        for key, ax in zip(metrics, panels[len(terms):]):
            values = 100 * np.array([record["val"][key] for record in records], dtype=np.float64)
            ax.plot(epochs, values, color=colour, linestyle=line_style, linewidth=1.2, label=label,
                    **_dots(records))
            for role, epoch in kept.items():
                at = int(np.flatnonzero(epochs == epoch)[0])
                ax.plot([epoch], [values[at]], marker=markers[role], markersize=sizes[role], linestyle="none",
                        color=colour, markeredgecolor="#222222", zorder=3 + roles.index(role), clip_on=False,
                        label=f"{label}: selected {role}")
    first = min(record["epoch"] for records in runs.values() for record in records)
    last = max(record["epoch"] for records in runs.values() for record in records)
    for ax, panel_title in zip(panels, titles):
        _style_curve_panel(ax, panel_title, "mean loss" if panel_title.startswith("loss ") else "%", (first, last))
    if title:
        fig.suptitle(title, fontsize=TITLE_FONT_SIZE)
    fig.legend(handles=handles, loc="lower center", ncol=legend_columns, fontsize=LEGEND_FONT_SIZE, frameon=False)
    fig.tight_layout(rect=(0, legend_height / height, 1, 1))   # tight_layout makes room for the suptitle
    return fig


def _dots(records):
    """Line2D markers of a run's curve: a dot per epoch for a short run, none for a long one."""
    if len(records) > DOT_EPOCHS:
        return {}
    return {"marker": "o", "markersize": DOT_SIZE}


def _style_curve_panel(ax, panel_title, y_label, epoch_range):
    ax.set_title(panel_title, fontsize=9)
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel(y_label, fontsize=8)
    # half an epoch either side: one epoch is not a degenerate range, whose ticks would be fractional
    first, last = epoch_range
    pad = max(0.5, 0.03 * (last - first))
    ax.set_xlim(first - pad, last + pad)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.tick_params(labelsize=7)
    ax.grid(color="#DDDDDD", linewidth=0.5)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def wrap_title(title, width_inches, font_size=TITLE_FONT_SIZE):
    """`title` with each of its lines wrapped to fit a figure `width_inches` wide: a sweep's titles
    name the split, the dataset and the flags of every run, longer than a narrow bar chart."""
    chars = max(20, int(width_inches * 72 / (CHAR_WIDTH_EMS * font_size)))
    return "\n".join(textwrap.fill(line, chars) or line for line in str(title).split("\n"))


def plot_training_curves(runs, out_path, title, metrics=DEFAULT_CURVE_METRICS):
    """One PNG of the training curves of `runs` = {label: epoch records} (one label per seed; one
    entry for a single run). A panel per loss term logged by any run (the union: ablated runs lack
    some terms), then a panel per val metric of `metrics` in percent; a line per run, in the same
    colour in every panel; in the metric panels each run's selected epochs (`selected_epochs`) carry
    a marker per role. Raises PlotInputError for no runs, a run without records or without a
    chosen metric. Written atomically; returns out_path."""
    return _save_png(training_curves_figure(runs, title, metrics), out_path)


def _check_rows(rows, metrics, baseline):
    if not rows:
        raise PlotInputError("no rows to plot")
    if not metrics:
        raise PlotInputError("no metrics chosen to plot")
    for name, row in rows.items():
        for key in metrics:
            stats = row.get(key) if isinstance(row, dict) else None
            if stats is None:
                raise PlotInputError(f"row {name!r} has no metric {key!r}")
            if not isinstance(stats, dict) or not _is_number(stats.get("mean")):
                raise PlotInputError(f"row {name!r}, metric {key!r}: needs a numeric 'mean', got {stats!r}")
    if baseline is not None and baseline not in rows:
        raise PlotInputError(f"baseline {baseline!r} is not a row (rows: {', '.join(map(repr, rows))})")


def metric_bars_figure(rows, title, metrics=DEFAULT_BAR_METRICS, baseline=None):
    """The figure of `plot_metric_bars`."""
    metrics = tuple(metrics)
    _check_rows(rows, metrics, baseline)
    names = list(rows)
    width = max(4.5, 1.2 + len(metrics) * (BAR_WIDTH * len(names) + 0.6))
    # legend below the axes, as many columns as the longest (wrapped) row title allows
    labels = [textwrap.fill(str(name), LEGEND_LABEL_CHARS) for name in names]
    if baseline is not None:
        labels.append(textwrap.fill(f"baseline: {baseline}", LEGEND_LABEL_CHARS))
    widest = max(len(line) for label in labels for line in label.split("\n"))
    entry_points = 0.6 * LEGEND_FONT_SIZE * widest + 40
    legend_columns = max(1, min(len(labels), int(width * 72 // entry_points)))
    # a legend fills its columns as np.array_split does; the tallest column sets its height
    lines = max(sum(label.count("\n") + 1 for label in column)
                for column in np.array_split(np.array(labels, dtype=object), legend_columns))
    legend_height = LEGEND_LINE_HEIGHT * lines + 0.2
    title = wrap_title(title, width) if title else ""
    height = 3.8 + legend_height + TITLE_LINE_HEIGHT * title.count("\n")
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bar_width = GROUP_WIDTH / len(names)
    handles, top = [], 0.0
    for index, name in enumerate(names):
        positions = np.arange(len(metrics)) + (index - (len(names) - 1) / 2) * bar_width
        means = [float(rows[name][key]["mean"]) for key in metrics]
        handles.append(ax.bar(positions, means, bar_width * 0.9, color=style_of(index)[0], label=labels[index],
                              zorder=2))
        for position, key, mean in zip(positions, metrics, means):
            top = max(top, _draw_spread(ax, position, mean, rows[name][key], bar_width))
    if baseline is not None:
        groups = np.arange(len(metrics))
        handles.append(ax.hlines([float(rows[baseline][key]["mean"]) for key in metrics], groups - GROUP_WIDTH / 2,
                                 groups + GROUP_WIDTH / 2, colors="#333333", linestyles="--", linewidth=1.1,
                                 zorder=4, label=labels[-1]))
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([metric_title(key) for key in metrics], fontsize=9)
    ax.set_xlim(-0.5, len(metrics) - 0.5)
    ax.set_ylim(0, max(top, 1.0) * 1.12)
    ax.set_ylabel("score (%)", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", color="#DDDDDD", linewidth=0.5)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=TITLE_FONT_SIZE)
    fig.legend(handles=handles, loc="lower center", ncol=legend_columns,
               fontsize=LEGEND_FONT_SIZE, frameon=False)
    fig.tight_layout(rect=(0, legend_height / height, 1, 1))   # tight_layout makes room for the suptitle
    return fig


def _draw_spread(ax, position, mean, stats, bar_width):
    """Error bar (std, when above 0), the seeds' values as dots and the mean as text over one bar;
    returns the highest y drawn."""
    std = float(stats.get("std", 0.0))
    values = np.asarray(stats.get("values", []), dtype=np.float64)
    if std > 0:
        ax.errorbar(position, mean, yerr=std, fmt="none", ecolor="#222222", elinewidth=1, capsize=3, zorder=3)
    if values.size:
        # spread across the bar so that equal values stay countable
        offsets = np.linspace(-0.25, 0.25, values.size) * bar_width if values.size > 1 else np.zeros(1)
        ax.scatter(position + offsets, values, s=10, color="#222222", edgecolors="white", linewidths=0.5, zorder=5)
    highest = max(mean + std, float(values.max()) if values.size else mean)
    ax.annotate(f"{mean:.1f}", xy=(position, highest), xytext=(0, 2), textcoords="offset points",
                ha="center", va="bottom", fontsize=7)
    return highest


def plot_metric_bars(rows, out_path, title, metrics=DEFAULT_BAR_METRICS, baseline=None):
    """One PNG of a grouped bar chart of aggregated scores.

    rows = {row title: {metric key: {"mean", "std", "values": per seed}}}, all in percent (the
    aggregate of scripts/multi_seed.py). A group per metric, a bar per row (titles in the legend),
    the std as an error bar (none for a single seed), each seed's value as a dot and the mean above
    the bar; when `baseline` names a row, a dashed line at its mean across each group. Raises
    PlotInputError for a row without a chosen metric or an unknown baseline. Written atomically;
    returns out_path."""
    return _save_png(metric_bars_figure(rows, title, metrics, baseline), out_path)


def _save_png(fig, out_path):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(buffer.getvalue(), out_path)
    return out_path
