"""Windows of videos of any length, stitching, and the events of a stitched timeline, on hand-made cases."""
import json

import matplotlib.image
import numpy as np
import pytest

from avvp_data.llp import CLASS_INDEX, NUM_CLASSES
from extraction.windows import VideoTooShort, Window, describe_plan, plan_windows, stitch, whole_segments
from reporting.timeline import timeline_events, timeline_figure, video_timeline, write_parsed_video


@pytest.mark.parametrize("duration, segments", [(0.95, 1), (3.0, 3), (3.5, 3), (9.96, 10), (10.0, 10),
                                                (10.04, 10), (10.95, 11), (25.4, 25)])
def test_whole_segments_tolerates_container_rounding(duration, segments):
    assert whole_segments(duration) == segments


def test_short_video_is_one_padded_window():
    assert plan_windows(3.0) == [Window(start=0, keep_from=0, keep_to=3, padded=7)]
    assert plan_windows(9.97) == [Window(0, 0, 10, 0)]
    assert "padded by 7 s" in describe_plan(3.0, plan_windows(3.0))


def test_long_video_windows_end_aligned_and_overlap_reported_once():
    windows = plan_windows(25.0)
    assert windows == [Window(0, 0, 10, 0), Window(10, 0, 10, 0), Window(15, 5, 10, 0)]
    assert [w.kept_seconds for w in windows] == [(0, 10), (10, 20), (20, 25)]
    assert plan_windows(30.0) == [Window(0, 0, 10, 0), Window(10, 0, 10, 0), Window(20, 0, 10, 0)]
    plan = describe_plan(25.6, plan_windows(25.6))
    assert "overlaps the one before by 5 s" in plan and "last 0.60 s" in plan


def test_too_short_video_is_refused():
    with pytest.raises(VideoTooShort, match="shorter than one"):
        plan_windows(0.5)


def test_stitch_takes_each_second_from_the_first_window_covering_it():
    windows = plan_windows(25.0)
    # value = 100 * window + position: which window and position each stitched second came from
    per_window = np.array([[100 * w + p for p in range(10)] for w in range(3)])
    stitched = stitch(per_window, windows)
    assert stitched.tolist() == list(range(10)) + list(range(100, 110)) + [205, 206, 207, 208, 209]
    # segments on another axis (class x segment)
    per_window_classes = np.stack([np.stack([per_window[w]] * 2) for w in range(3)])   # (3, 2, 10)
    assert stitch(per_window_classes, windows, axis=1).shape == (2, 25)
    with pytest.raises(ValueError, match="2 windows of values for 3"):
        stitch(per_window[:2], windows)


def _outputs(frame_prob, audio_gate, visual_gate):
    count = len(frame_prob)
    return {"frame_prob": frame_prob, "audio_prob": audio_gate, "visual_prob": visual_gate,
            "global_prob": np.zeros((count, NUM_CLASSES), dtype=np.float32)}


def test_timeline_decisions_equal_the_windows_and_events_merge_across_windows():
    windows = plan_windows(25.0)
    dog, cat = CLASS_INDEX["Dog"], CLASS_INDEX["Cat"]
    frame_prob = np.zeros((3, 10, 2, NUM_CLASSES), dtype=np.float32)
    frame_prob[0, 7:, 0, dog] = 0.9          # dog heard from 7 s ...
    frame_prob[1, :3, 0, dog] = 0.7          # ... through 12 s: one event across windows 0 and 1
    frame_prob[1, 5:, 1, cat] = 0.8          # cat seen 15-20 s by window 1 ...
    frame_prob[2, :5, 1, cat] = 0.99         # ... window 2 sees it at 15-20 s as well, but it reports 20-25 s only
    frame_prob[2, 5:8, 1, cat] = 0.6         # cat seen 20-23 s
    frame_prob[2, 5:8, 0, cat] = 0.55        # and heard 20-23 s: audio-visual
    gates = np.full((3, NUM_CLASSES), 0.9, dtype=np.float32)
    gates[2, dog] = 0.1                      # gating is per window
    timeline = video_timeline(_outputs(frame_prob, gates, gates), windows, "modality")
    assert timeline["pred_audio"].shape == (NUM_CLASSES, 25) and timeline["frame_prob"].shape == (25, 2, NUM_CLASSES)
    assert np.flatnonzero(timeline["pred_audio"][dog]).tolist() == list(range(7, 13))
    assert np.flatnonzero(timeline["pred_visual"][cat]).tolist() == list(range(15, 23))
    events = timeline_events(timeline)
    assert events == [
        {"class": "Dog", "modality": "audio", "onset": 7, "offset": 13,
         "confidence": round((3 * 0.9 + 3 * 0.7) / 6, 4)},
        {"class": "Cat", "modality": "visual", "onset": 15, "offset": 23,
         "confidence": round((5 * 0.8 + 3 * 0.6) / 8, 4)},
        {"class": "Cat", "modality": "audio", "onset": 20, "offset": 23, "confidence": 0.55},
        {"class": "Cat", "modality": "audio-visual", "onset": 20, "offset": 23, "confidence": 0.55},
    ]
    # a gate below 0.5 silences its window's segments, exactly as in evaluation
    frame_prob[2, 5:, 0, dog] = 0.9
    timeline = video_timeline(_outputs(frame_prob, gates, gates), windows, "modality")
    assert not timeline["pred_audio"][dog, 20:].any()


def test_parsed_video_files(tmp_path):
    windows = plan_windows(12.0)
    frame_prob = np.zeros((2, 10, 2, NUM_CLASSES), dtype=np.float32)
    frame_prob[1, 8:, 1, CLASS_INDEX["Car"]] = 0.75   # window 1 (2-12 s) reports 10-12 s
    gates = np.ones((2, NUM_CLASSES), dtype=np.float32)
    timeline = video_timeline(_outputs(frame_prob, gates, gates), windows, "modality")
    paths, events = write_parsed_video(str(tmp_path), "clip", timeline, {"model": "test"})
    with open(paths["events"]) as f:
        content = json.load(f)
    assert content["segments"] == 12 and content["model"] == "test"
    assert content["events"] == events == [{"class": "Car", "modality": "visual", "onset": 10, "offset": 12,
                                            "confidence": 0.75}]
    with open(paths["visual_csv"]) as f:   # the eval-file format, in the stitched video's seconds
        assert f.read().splitlines() == ["filename\tonset\toffset\tevent_labels", "clip\t10\t12\tCar"]
    with open(paths["audio_csv"]) as f:
        assert f.read().splitlines() == ["filename\tonset\toffset\tevent_labels"]
    with open(paths["timeline"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_timeline_picture_carries_the_warnings_and_shows_the_top_classes_when_nothing_passes(tmp_path):
    windows = plan_windows(25.0)
    frame_prob = np.full((3, 10, 2, NUM_CLASSES), 0.3, dtype=np.float32)   # nothing passes 0.5
    gates = np.full((3, NUM_CLASSES), 0.2, dtype=np.float32)
    gates[2, CLASS_INDEX["Dog"]] = 0.9    # the last window's gate: the highest over the video
    gates[0, CLASS_INDEX["Cat"]] = 0.8
    gates[1, CLASS_INDEX["Car"]] = 0.7
    timeline = video_timeline(_outputs(frame_prob, gates, gates), windows, "modality")
    assert not timeline["pred_audio"].any() and not timeline["pred_visual"].any()
    warnings = ["DHHN was trained on the synthetic LLP (data/synthetic): meaningless on real videos"]
    fig = timeline_figure("clip", timeline, {"model": "DHHN", "warnings": warnings})
    [box] = [text for text in fig.texts if text is not fig._suptitle]
    assert " ".join(box.get_text().split()) == f"warning: {warnings[0]}"
    [ax] = fig.axes
    assert [text.get_text() for text in ax.texts if text.get_fontweight() == "bold"] == ["Dog", "Cat", "Car"]
    assert "nothing passes the threshold 0.5" in ax.get_title()
    # right of each track: its gate, the highest of the windows' (they differ)
    numbers = [text.get_text() for text in ax.texts if text.get_fontweight() != "bold"]
    assert numbers == ["0.90", "0.90", "0.80", "0.80", "0.70", "0.70", "max gate"]
    assert len([line for line in ax.lines if line.get_label() == "segment probability"]) == 6

    plain, _ = write_parsed_video(str(tmp_path / "plain"), "clip", timeline, {"model": "DHHN"})
    warned, _ = write_parsed_video(str(tmp_path / "warned"), "clip", timeline, {"model": "DHHN", "warnings": warnings})
    heights = [matplotlib.image.imread(paths["timeline"]).shape[0] for paths in (plain, warned)]
    assert heights[1] > heights[0]   # the PNG written has the box
