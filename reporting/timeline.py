"""A parsed video: its windows' model outputs as one timeline, its events, and the files
parse_video.py writes for it (docs/PROTOCOL.md §15).

Segments are decided per window exactly as in evaluation (segment probability and the window's
video-level gate both at least 0.5, PROTOCOL.md §9), then stitched (extraction/windows.py), so
every stitched decision is one a window made. An event is a maximal run of positive segments
of one class; runs that meet at a window boundary are one event.

The timeline picture carries the description's "warnings" (parse_video.py puts the random-weights
and synthetic-training warnings there), so the PNG says them without its JSON.
"""
import io
import os

import numpy as np
import torch

from avvp_data.llp import CLASSES, MODALITIES
from extraction.windows import SEGMENT_SECONDS, stitch
from reporting.export import write_event_csv
from reporting.visualize import Panel, parsing_figure
from utils.eval_metrics import extract_events, gates, segment_predictions
from utils.io import atomic_write_bytes, atomic_write_json

EVENT_MODALITIES = ("audio", "visual", "audio-visual")


def video_timeline(outputs, windows, gating):
    """One video's timeline from its windows' outputs ("frame_prob" (W, 10, 2, 25), "audio_prob",
    "visual_prob", "global_prob" (W, 25), numpy or torch).

    Returns numpy arrays over the video's n segments: pred_audio / pred_visual (25, n) bool,
    frame_prob (n, 2, 25) and gate_audio / gate_visual (n, 25), the video-level probability that
    gated each segment (its window's).
    """
    tensors = {key: torch.as_tensor(np.asarray(value)) for key, value in outputs.items()}
    pred_audio, pred_visual = (pred.numpy() for pred in segment_predictions(tensors, gating))
    gate_audio, gate_visual = (np.asarray(gate)[:, None, :].repeat(pred_audio.shape[-1], axis=1)
                               for gate in gates(tensors, gating))
    return {"pred_audio": stitch(pred_audio, windows, axis=1), "pred_visual": stitch(pred_visual, windows, axis=1),
            "frame_prob": stitch(tensors["frame_prob"].numpy(), windows, axis=0),
            "gate_audio": stitch(gate_audio, windows, axis=0), "gate_visual": stitch(gate_visual, windows, axis=0)}


def timeline_events(timeline, classes=CLASSES):
    """[{class, modality, onset, offset, confidence}] of a timeline, onset/offset in seconds.

    Audio-visual events are the runs where the class is both heard and seen (PROTOCOL.md §9).
    confidence: the mean over the event's segments of the segment probability (for
    audio-visual, the smaller of the two), a number in [0.5, 1].
    """
    heard, seen = timeline["pred_audio"], timeline["pred_visual"]
    prob = {modality: timeline["frame_prob"][:, MODALITIES.index(modality), :].T for modality in MODALITIES}
    decided = {"audio": heard, "visual": seen, "audio-visual": heard & seen}
    prob["audio-visual"] = np.minimum(prob["audio"], prob["visual"])
    events = []
    for modality in EVENT_MODALITIES:
        for cls in np.flatnonzero(decided[modality].any(axis=1)):
            for onset, offset in extract_events(decided[modality][cls]):
                events.append({"class": classes[cls], "modality": modality,
                               "onset": onset * SEGMENT_SECONDS, "offset": offset * SEGMENT_SECONDS,
                               "confidence": round(float(prob[modality][cls, onset:offset].mean()), 4)})
    return sorted(events, key=lambda event: (event["onset"], event["class"], EVENT_MODALITIES.index(event["modality"])))


def write_parsed_video(folder, name, timeline, description, with_picture=True, dpi=110, classes=CLASSES):
    """Write `name`'s events JSON, eval-format CSVs and (optionally) timeline PNG into `folder`;
    returns ({kind: path}, events). description: what the JSON says besides the events (source, model, windows,
    warnings); the picture is `timeline_figure`'s; `classes` names the class axis (the model's)."""
    os.makedirs(folder, exist_ok=True)
    paths = {"events": os.path.join(folder, f"{name}_events.json"),
             "audio_csv": os.path.join(folder, f"{name}_audio.csv"),
             "visual_csv": os.path.join(folder, f"{name}_visual.csv")}
    events = timeline_events(timeline, classes)
    atomic_write_json({**description, "video": name, "segments": int(timeline["pred_audio"].shape[1]),
                       "segment_seconds": SEGMENT_SECONDS, "events": events}, paths["events"])
    write_event_csv(paths["audio_csv"], [name], timeline["pred_audio"][None], classes)
    write_event_csv(paths["visual_csv"], [name], timeline["pred_visual"][None], classes)
    if with_picture:
        paths["timeline"] = os.path.join(folder, f"{name}_timeline.png")
        picture = io.BytesIO()
        timeline_figure(name, timeline, description, dpi, classes).savefig(picture, format="png")
        atomic_write_bytes(picture.getvalue(), paths["timeline"])
    return paths, events


def timeline_figure(name, timeline, description, dpi=110, classes=CLASSES):
    """The picture of a video's timeline, titled `name`: its decisions, segment probabilities and,
    right of each track, the video-level gate (the highest of its windows' when they differ), with
    `description["warnings"]` in a red box at the top."""
    segment_gates = {modality: np.asarray(timeline[f"gate_{modality}"]) for modality in MODALITIES}
    # each window gates its own segments; one number per track is their highest
    several = any(np.ptp(gate, axis=0).any() for gate in segment_gates.values())
    panel = Panel(label=description.get("model", "prediction"), pred_audio=timeline["pred_audio"],
                  pred_visual=timeline["pred_visual"], frame_prob=timeline["frame_prob"],
                  audio_prob=segment_gates["audio"].max(axis=0), visual_prob=segment_gates["visual"].max(axis=0),
                  gate_title="max gate" if several else "gate")
    return parsing_figure(None, None, [panel], title=name, dpi=dpi, warnings=description.get("warnings") or (),
                          class_names=classes)
