"""Parsing timelines: what a model predicted for one video against the truth, as a PNG.

One row per class that is predicted or annotated (either modality), an audio and a visual track
per class, the segments along x (10 for an LLP clip, any number for a stitched video of
parse_video.py). Each segment is coloured by its outcome: correct (TP), missed (FN) or false
(FP); ground-truth events are outlined, so an event that is half found shows as one box, half
filled. Without ground truth (a user's own video) predicted segments are simply filled.
Several predictions of the same video (two models, two checkpoints) are drawn side by side on
the same class rows. The spans drawn come from `segment_spans`, which tests check on hand-made
cases.

Rendering uses matplotlib's Agg canvas directly (no pyplot, no global backend change).
"""
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from avvp_data.llp import CLASSES, MODALITIES, NUM_CLASSES, NUM_SEGMENTS
from utils.eval_metrics import extract_events

# Okabe-Ito colours (colour-blind safe); FN is also hatched so it survives greyscale printing
OUTCOME_STYLES = {
    "tp": dict(facecolor="#009E73", edgecolor="none", label="correct (TP)"),
    "fn": dict(facecolor="#F5F5F5", edgecolor="#E69F00", hatch="////", linewidth=0.0, label="missed (FN)"),
    "fp": dict(facecolor="#D55E00", edgecolor="none", label="false (FP)"),
}
PREDICTED_STYLE = dict(facecolor="#0072B2", edgecolor="none", label="predicted")   # no truth to compare with
TRUTH_EDGE = "#222222"
PROB_COLOUR = "#332288"   # dark indigo: readable on the TP green and the FP vermillion
TRACK_HEIGHT = 0.8
PROB_MARGIN = 0.1   # of a track's height, below 0 and above 1


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
    """Indices of the classes positive anywhere in the truth or in any prediction; all (25, T)."""
    present = np.zeros(NUM_CLASSES, dtype=bool)
    for labels in (gt_audio, gt_visual, *predictions):
        present |= np.asarray(labels).astype(bool).any(axis=1)
    return [int(c) for c in np.flatnonzero(present)]


@dataclass
class Panel:
    """One prediction of a video. pred_audio / pred_visual (25, T) 0/1; optional frame_prob
    (T, 2, 25) drawn as a line in each track; audio_prob / visual_prob (25,): the video-level gates
    of the segments (PROTOCOL.md §9), written at the right end of each track."""
    label: str
    pred_audio: np.ndarray
    pred_visual: np.ndarray
    frame_prob: np.ndarray = None
    audio_prob: np.ndarray = None
    visual_prob: np.ndarray = None
    subtitle: str = ""


def render_parsing(path, gt_audio, gt_visual, panels, title=None, dpi=110):
    """Draw the panels of one video side by side and save a PNG at `path`; returns `path`.

    gt_audio, gt_visual: (25, T) 0/1 truth, or both None (no truth: predictions are drawn as
    such). panels: Panel list (one: a timeline; two or more: a comparison on the same class rows).
    """
    if not panels:
        raise ValueError("render_parsing needs at least one panel")
    num_segments = np.asarray(panels[0].pred_audio).shape[-1]
    with_truth = gt_audio is not None
    if with_truth != (gt_visual is not None):
        raise ValueError("give both gt_audio and gt_visual, or neither")
    if not with_truth:
        gt_audio = gt_visual = np.zeros((NUM_CLASSES, num_segments), dtype=bool)
    gt = {"audio": np.asarray(gt_audio).astype(bool), "visual": np.asarray(gt_visual).astype(bool)}
    classes = classes_to_show(gt["audio"], gt["visual"],
                              *(p for panel in panels for p in (panel.pred_audio, panel.pred_visual)))
    num_tracks = max(1, 2 * len(classes))
    # an LLP clip keeps the published 5.2-in panel; longer timelines grow with their length
    width = 5.2 * max(1.0, min(num_segments / NUM_SEGMENTS, 6.0))
    fig = Figure(figsize=(2.6 + width * len(panels), 1.9 + 0.36 * num_tracks), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for column, (ax, panel) in enumerate(zip(axes, panels)):
        _draw_panel(ax, panel, gt, classes, with_labels=column == 0, with_truth=with_truth)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.legend(handles=_legend_handles(any(panel.frame_prob is not None for panel in panels), with_truth),
               loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05 + 0.25 / num_tracks, 1, 1))
    fig.savefig(path, format="png")
    return path


def _track_y(class_row, track):
    """Bottom of a track: classes from the top, audio above visual, a gap between classes."""
    return -(3 * class_row + MODALITIES.index(track)) - TRACK_HEIGHT


def _draw_panel(ax, panel, gt, classes, with_labels, with_truth=True):
    preds = {"audio": np.asarray(panel.pred_audio).astype(bool), "visual": np.asarray(panel.pred_visual).astype(bool)}
    num_segments = preds["audio"].shape[-1]
    styles = OUTCOME_STYLES if with_truth else {"pred": PREDICTED_STYLE}
    gates = {"audio": panel.audio_prob, "visual": panel.visual_prob}
    ticks, tick_labels = [], []
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
            if panel.frame_prob is not None:
                prob = np.asarray(panel.frame_prob)[:, MODALITIES.index(track), cls]
                # inset, so that 0 and 1 stay visible inside the track's outline
                height = bottom + TRACK_HEIGHT * (PROB_MARGIN + (1 - 2 * PROB_MARGIN) * np.append(prob, prob[-1]))
                ax.step(np.arange(num_segments + 1), height,
                        where="post", color=PROB_COLOUR, linewidth=0.9)
            ticks.append(bottom + TRACK_HEIGHT / 2)
            tick_labels.append(track)
            if gates[track] is not None:   # per panel, so not a (shared) tick label
                ax.text(num_segments + 0.012 * num_segments, bottom + TRACK_HEIGHT / 2, f"{float(np.asarray(gates[track])[cls]):.2f}",
                        ha="left", va="center", fontsize=7, color=PROB_COLOUR)
        if with_labels:
            ax.annotate(CLASSES[cls].replace("_", " "), xy=(0, _track_y(row, "audio")),
                        xycoords="data", xytext=(-62, 0), textcoords="offset points",
                        ha="right", va="center", fontsize=9, fontweight="bold")
    if not classes:
        ax.text(num_segments / 2, -0.5, "nothing predicted" + (", nothing annotated" if with_truth else ""),
                ha="center", va="center")
    ax.set_xlim(0, num_segments)
    ax.set_ylim(_track_y(max(len(classes) - 1, 0), "visual") - 0.3, 0.3)
    ax.set_xticks(range(0, num_segments + 1, max(1, num_segments // 10)))
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_yticks(ticks)
    ax.set_yticklabels(tick_labels, fontsize=7)
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", color="#DDDDDD", linewidth=0.5)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(panel.label + (f"\n{panel.subtitle}" if panel.subtitle else ""), fontsize=9)
    if any(gate is not None for gate in gates.values()):
        ax.text(num_segments + 0.012 * num_segments, 0.1, "gate", ha="left", va="bottom", fontsize=7,
                color=PROB_COLOUR)


def _legend_handles(with_probability, with_truth=True):
    styles = OUTCOME_STYLES.values() if with_truth else (PREDICTED_STYLE,)
    handles = [Patch(**{key: value for key, value in style.items() if key != "linewidth"}) for style in styles]
    if with_truth:
        handles.append(Patch(facecolor="none", edgecolor=TRUTH_EDGE, linewidth=1.4, label="ground-truth event"))
    if with_probability:
        handles.append(Line2D([], [], color=PROB_COLOUR, linewidth=0.9, label="segment probability"))
    return handles


def rank_videos(scores, count, worst=False):
    """Indices of the `count` highest (or lowest, worst=True) scores; ties keep the original order."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores if worst else -scores, kind="stable")
    return [int(i) for i in order[:count]]
