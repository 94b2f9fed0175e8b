"""Parsing timelines: what a model predicted for one video against the truth, as a PNG.

One row per class that is predicted or annotated (either modality), an audio and a visual track
per class, the segments along x (10 for an LLP clip, any number for a stitched video of
parse_video.py). Each segment is coloured by its outcome: correct (TP), missed (FN) or false
(FP); ground-truth events are outlined, so an event that is half found shows as one box, half
filled. Without ground truth (a user's own video) predicted segments are simply filled.
Several predictions of the same video (two models, two checkpoints) are drawn side by side on
the same class rows. The spans drawn come from `segment_spans`, which tests check on hand-made
cases.

A segment probability is a line inside its track on a 0-1 scale (0 and 1 marked on the right,
the decision threshold dashed). When no class is predicted or annotated, the picture would be an
empty strip; it shows the few classes of highest video-level probability instead, and says so.
Warnings given to the picture (a model trained on the synthetic LLP, random weights) are printed
in a red box above it, so that a PNG shared without its JSON still carries them.

Rendering uses matplotlib's Agg canvas directly (no pyplot, no global backend change).
"""
import textwrap
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from avvp_data.llp import CLASSES, MODALITIES, NUM_SEGMENTS
from utils.eval_metrics import DECISION_THRESHOLD, extract_events

# Okabe-Ito colours (colour-blind safe); FN is also hatched so it survives greyscale printing
OUTCOME_STYLES = {
    "tp": dict(facecolor="#009E73", edgecolor="none", label="correct (TP)"),
    "fn": dict(facecolor="#F5F5F5", edgecolor="#E69F00", hatch="////", linewidth=0.0, label="missed (FN)"),
    "fp": dict(facecolor="#D55E00", edgecolor="none", label="false (FP)"),
}
# no truth to compare with; sky blue, on which the indigo probability line stays readable
PREDICTED_STYLE = dict(facecolor="#56B4E9", edgecolor="none", label="predicted")
TRUTH_EDGE = "#222222"
PROB_COLOUR = "#332288"   # dark indigo: readable on the TP green and the FP vermillion
THRESHOLD_COLOUR = "#555555"
WARNING_STYLE = dict(color="#A50F15", fontsize=8.5, bbox=dict(boxstyle="round,pad=0.5", facecolor="#FDECEA",
                                                               edgecolor="#C62828", linewidth=1.2))
WARNING_PAD = 0.5            # of WARNING_STYLE's font size, around the text inside its box (boxstyle pad)
TOP_CLASSES = 3              # classes shown when none is predicted or annotated
TRACK_HEIGHT = 0.8
PROB_MARGIN = 0.1   # of a track's height, below 0 and above 1
TRACK_INCHES = 0.4  # figure height per track
CHAR_WIDTH_EMS = 0.6   # average glyph width of DejaVu Sans, rounded up, for wrapping text to the figure
LINE_SPACING = 1.2     # matplotlib's default, in font sizes


def segment_spans(pred_row, gt_row):
    """Spans [(start, end)] (end exclusive, in segments) of one class and modality of one video.

    pred_row, gt_row: (T,) 0/1 (T = 10 for an LLP clip). Returns {"tp", "fn", "fp": maximal runs of
    segments with that outcome; "truth", "pred": the events (maximal runs, PROTOCOL.md §9) of the
    truth and the prediction}.
    """
    pred = np.asarray(pred_row).astype(bool)
    gt = np.asarray(gt_row).astype(bool)
    if pred.ndim != 1 or pred.shape != gt.shape or not len(pred):
        raise ValueError(f"rows must have one equal shape (T,), got {pred.shape} and {gt.shape}")
    return {"tp": extract_events(pred & gt), "fn": extract_events(~pred & gt), "fp": extract_events(pred & ~gt),
            "truth": extract_events(gt), "pred": extract_events(pred)}


def classes_to_show(gt_audio, gt_visual, *predictions):
    """Indices of the classes positive anywhere in the truth or in any prediction; all (C, T)."""
    present = np.zeros(np.asarray(gt_audio).shape[0], dtype=bool)
    for labels in (gt_audio, gt_visual, *predictions):
        present |= np.asarray(labels).astype(bool).any(axis=1)
    return [int(c) for c in np.flatnonzero(present)]


@dataclass
class Panel:
    """One prediction of a video. pred_audio / pred_visual (25, T) 0/1; optional frame_prob
    (T, 2, 25) drawn as a line in each track; audio_prob / visual_prob (25,): the video-level gates
    of the segments (PROTOCOL.md §9), written at the right end of each track under `gate_title`."""
    label: str
    pred_audio: np.ndarray
    pred_visual: np.ndarray
    frame_prob: np.ndarray = None
    audio_prob: np.ndarray = None
    visual_prob: np.ndarray = None
    subtitle: str = ""
    gate_title: str = "gate"


def video_probabilities(panel):
    """(25,) video-level probability of each class in one panel, the higher modality: its gates
    when it has them, else its highest segment probability; None without probabilities."""
    given = [np.asarray(gate, dtype=np.float64) for gate in (panel.audio_prob, panel.visual_prob) if gate is not None]
    if given:
        return np.max(given, axis=0)
    if panel.frame_prob is not None:
        return np.asarray(panel.frame_prob, dtype=np.float64).max(axis=(0, 1))
    return None


def top_classes(panels, count=TOP_CLASSES):
    """Indices of the `count` classes of highest video-level probability in any panel, highest
    first (ties in class order); [] when no panel has probabilities."""
    found = [probs for probs in map(video_probabilities, panels) if probs is not None]
    if not found:
        return []
    return [int(c) for c in np.argsort(-np.max(found, axis=0), kind="stable")[:count]]


def render_parsing(path, gt_audio, gt_visual, panels, title=None, dpi=110, warnings=(), class_names=CLASSES):
    """Draw the panels of one video side by side and save a PNG at `path`; returns `path`.
    Arguments as `parsing_figure`."""
    parsing_figure(gt_audio, gt_visual, panels, title, dpi, warnings, class_names).savefig(path, format="png")
    return path


def parsing_figure(gt_audio, gt_visual, panels, title=None, dpi=110, warnings=(), class_names=CLASSES):
    """The figure of one video's panels side by side.

    gt_audio, gt_visual: (25, T) 0/1 truth, or both None (no truth: predictions are drawn as
    such). panels: Panel list (one: a timeline; two or more: a comparison on the same class rows).
    warnings: sentences printed in a red box at the top. class_names: the names of the class axis.
    """
    if not panels:
        raise ValueError("render_parsing needs at least one panel")
    num_segments = np.asarray(panels[0].pred_audio).shape[-1]
    with_truth = gt_audio is not None
    if with_truth != (gt_visual is not None):
        raise ValueError("give both gt_audio and gt_visual, or neither")
    if not with_truth:
        gt_audio = gt_visual = np.zeros((len(class_names), num_segments), dtype=bool)
    gt = {"audio": np.asarray(gt_audio).astype(bool), "visual": np.asarray(gt_visual).astype(bool)}
    classes = classes_to_show(gt["audio"], gt["visual"],
                              *(p for panel in panels for p in (panel.pred_audio, panel.pred_visual)))
    note = ""
    if not classes:
        classes = top_classes(panels)
        if classes:
            annotated = ", nothing annotated" if with_truth else ""
            note = (f"nothing passes the threshold {DECISION_THRESHOLD:g}{annotated}; top {len(classes)} classes "
                    "by video-level probability shown")
    num_tracks = max(1, 2 * len(classes))
    # an LLP clip keeps the published 5.2-in panel; longer timelines grow with their length
    panel_width = 5.2 * max(1.0, min(num_segments / NUM_SEGMENTS, 6.0))
    width = 2.6 + panel_width * len(panels)
    panel_titles = [_wrap("\n".join(filter(None, (panel.label, panel.subtitle, note))), panel_width, 9)
                    for panel in panels]
    # a comparison is as tall as a single timeline of the same video: room for a title and a
    # subtitle in any case, a legend laid out for one panel
    title_lines = max(2, *(text.count("\n") + 1 for text in panel_titles))
    handles = _legend_handles(any(panel.frame_prob is not None for panel in panels), with_truth)
    legend_columns, legend_inches = _legend_layout(handles, 2.6 + panel_width)
    warning_text = "\n".join(_wrap(f"warning: {text}", width - 0.4, WARNING_STYLE["fontsize"], indent="  ")
                             for text in warnings)
    warning_inches = 0.0
    if warning_text:
        lines = warning_text.count("\n") + 1
        warning_inches = (lines * LINE_SPACING + 2 * WARNING_PAD) * WARNING_STYLE["fontsize"] / 72 + 0.15
    height = 1.6 + TRACK_INCHES * num_tracks + 0.16 * title_lines + legend_inches + warning_inches
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for column, (ax, panel, panel_title) in enumerate(zip(axes, panels, panel_titles)):
        _draw_panel(ax, panel, gt, classes, class_names if column == 0 else None, with_truth=with_truth)
        ax.set_title(panel_title, fontsize=9)
    top = 1 - warning_inches / height
    if warning_text:
        pad_inches = WARNING_PAD * WARNING_STYLE["fontsize"] / 72
        fig.text(0.5, 1 - (0.05 + pad_inches) / height, warning_text, ha="center", va="top", multialignment="left",
                 **WARNING_STYLE)
    if title:
        fig.suptitle(title, fontsize=10, y=top - 0.08 / height)
    fig.legend(handles=handles, loc="lower center", ncol=legend_columns, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, legend_inches / height, 1, top), pad=0.8)
    return fig


def _wrap(text, width_inches, font_size, indent=""):
    """`text` with each line wrapped to `width_inches` at `font_size`."""
    chars = max(20, int(width_inches * 72 / (CHAR_WIDTH_EMS * font_size)))
    return "\n".join(textwrap.fill(line, chars, subsequent_indent=indent) or line for line in text.split("\n"))


def _legend_layout(handles, width_inches):
    """(columns, height in inches) of the legend: one row when its entries fit the figure's width."""
    entry_inches = [0.6 + len(handle.get_label()) * CHAR_WIDTH_EMS * 8 / 72 for handle in handles]
    columns = len(handles) if sum(entry_inches) <= width_inches - 0.4 else (len(handles) + 1) // 2
    rows = -(-len(handles) // columns)
    return columns, 0.18 * rows + 0.12


def _track_y(class_row, track):
    """Bottom of a track: classes from the top, audio above visual, a gap between classes."""
    return -(3 * class_row + MODALITIES.index(track)) - TRACK_HEIGHT


def _prob_y(bottom, prob):
    """Height of probability `prob` in the track starting at `bottom`: inset, so that 0 and 1 stay
    visible inside the track's outline."""
    return bottom + TRACK_HEIGHT * (PROB_MARGIN + (1 - 2 * PROB_MARGIN) * np.asarray(prob))


def _draw_panel(ax, panel, gt, classes, class_names, with_truth=True):
    """One panel; the class names beside its rows when `class_names` is given (the first panel)."""
    preds = {"audio": np.asarray(panel.pred_audio).astype(bool), "visual": np.asarray(panel.pred_visual).astype(bool)}
    num_segments = preds["audio"].shape[-1]
    styles = OUTCOME_STYLES if with_truth else {"pred": PREDICTED_STYLE}
    gates = {"audio": panel.audio_prob, "visual": panel.visual_prob}
    with_probability = panel.frame_prob is not None
    # the gates stand right of the 0-1 scale when there is one
    gate_offset = 14 if with_probability else 3
    ticks, tick_labels, scale = [], [], []
    for row, cls in enumerate(classes):
        for track in MODALITIES:
            bottom = _track_y(row, track)
            ax.add_patch(Rectangle((0, bottom), num_segments, TRACK_HEIGHT, facecolor="#FFFFFF",
                                   edgecolor="#BBBBBB", linewidth=0.5))
            spans = segment_spans(preds[track][cls], gt[track][cls])
            for outcome, style in styles.items():
                style = {key: value for key, value in style.items() if key != "label"}
                for start, end in spans[outcome]:
                    ax.add_patch(Rectangle((start, bottom), end - start, TRACK_HEIGHT, **style))
            for start, end in spans["truth"]:
                ax.add_patch(Rectangle((start, bottom), end - start, TRACK_HEIGHT, facecolor="none",
                                       edgecolor=TRUTH_EDGE, linewidth=1.4))
            if with_probability:
                prob = np.asarray(panel.frame_prob)[:, MODALITIES.index(track), cls]
                ax.hlines(_prob_y(bottom, DECISION_THRESHOLD), 0, num_segments, colors=THRESHOLD_COLOUR,
                          linestyles=(0, (3, 2)), linewidth=0.7, label="threshold")
                ax.step(np.arange(num_segments + 1), _prob_y(bottom, np.append(prob, prob[-1])),
                        where="post", color=PROB_COLOUR, linewidth=0.9, label="segment probability")
                scale += [_prob_y(bottom, 0.0), _prob_y(bottom, 1.0)]
            ticks.append(bottom + TRACK_HEIGHT / 2)
            tick_labels.append(track)
            if gates[track] is not None:   # per panel, so not a (shared) tick label
                ax.annotate(f"{float(np.asarray(gates[track])[cls]):.2f}", xy=(num_segments, bottom + TRACK_HEIGHT / 2),
                            xytext=(gate_offset, 0), textcoords="offset points", ha="left", va="center",
                            fontsize=7, color=PROB_COLOUR)
        if class_names is not None:
            ax.annotate(class_names[cls].replace("_", " "), xy=(0, _track_y(row, "audio")),
                        xycoords="data", xytext=(-62, 0), textcoords="offset points",
                        ha="right", va="center", fontsize=9, fontweight="bold")
    if not classes:
        ax.text(num_segments / 2, -0.5, "nothing predicted" + (", nothing annotated" if with_truth else ""),
                ha="center", va="center")
    ax.set_xlim(0, num_segments)
    ax.set_ylim(_track_y(max(len(classes) - 1, 0), "visual") - 0.3, 0.3)
    ax.set_xticks(range(0, num_segments + 1, max(1, num_segments // 10)))
    ax.set_xlabel("time (s)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_yticks(ticks)
    ax.set_yticklabels(tick_labels, fontsize=7)
    ax.tick_params(axis="y", length=0)
    if scale:   # the probability scale of every track: minor ticks on the right
        ax.set_yticks(scale, labels=["0", "1"] * (len(scale) // 2), minor=True)
    # no tick marks: a mark before "0" would read as "-0"
    ax.tick_params(axis="y", which="minor", left=False, right=False, labelleft=False, labelright=bool(scale),
                   length=0, pad=2, labelsize=6, labelcolor=PROB_COLOUR)
    ax.grid(axis="x", color="#DDDDDD", linewidth=0.5)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    if any(gate is not None for gate in gates.values()):
        ax.annotate(panel.gate_title, xy=(num_segments, 0.1), xytext=(gate_offset, 0), textcoords="offset points",
                    ha="left", va="bottom", fontsize=7, color=PROB_COLOUR)


def _legend_handles(with_probability, with_truth=True):
    styles = OUTCOME_STYLES.values() if with_truth else (PREDICTED_STYLE,)
    handles = [Patch(**{key: value for key, value in style.items() if key != "linewidth"}) for style in styles]
    if with_truth:
        handles.append(Patch(facecolor="none", edgecolor=TRUTH_EDGE, linewidth=1.4, label="ground-truth event"))
    if with_probability:
        handles.append(Line2D([], [], color=PROB_COLOUR, linewidth=0.9, label="segment probability (0-1)"))
        handles.append(Line2D([], [], color=THRESHOLD_COLOUR, linestyle=(0, (3, 2)), linewidth=0.7,
                              label=f"threshold {DECISION_THRESHOLD:g}"))
    return handles


def rank_videos(scores, count, worst=False):
    """Indices of the `count` highest (or lowest, worst=True) scores; ties keep the original order."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores if worst else -scores, kind="stable")
    return [int(i) for i in order[:count]]
