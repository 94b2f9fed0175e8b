"""Parsing pictures (reporting/visualize.py) read back from their matplotlib objects: the 0-1 scale
of the probability lines and its threshold, the classes shown when nothing passes the threshold,
and the warnings box."""
import numpy as np
import pytest
from matplotlib.collections import LineCollection

from avvp_data.llp import CLASS_INDEX, CLASSES, NUM_CLASSES, NUM_SEGMENTS
from reporting.visualize import Panel, parsing_figure, top_classes


def class_labels(ax):
    """The class names written left of the rows, top to bottom."""
    return [text.get_text() for text in ax.texts if text.get_fontweight() == "bold"]


def scale_of(ax):
    """[(y of 0, y of 1)] of each track, top to bottom, from the right-hand minor tick labels."""
    ticks = ax.get_yticks(minor=True)
    labels = [label.get_text() for label in ax.get_yticklabels(minor=True)]
    assert labels == ["0", "1"] * (len(ticks) // 2)
    return sorted(zip(ticks[::2], ticks[1::2]), reverse=True)


def probability_lines(ax):
    return [line for line in ax.lines if line.get_label() == "segment probability"]


def test_probability_lines_read_back_on_their_0_1_scale_with_the_threshold_dashed():
    pred = np.zeros((NUM_CLASSES, NUM_SEGMENTS), dtype=bool)
    dog = CLASS_INDEX["Dog"]
    pred[dog, 2:5] = True
    probs = np.random.default_rng(0).random((NUM_SEGMENTS, 2, NUM_CLASSES))
    fig = parsing_figure(None, None, [Panel("DHHN", pred, np.zeros_like(pred), frame_prob=probs)])
    [ax] = fig.axes
    assert class_labels(ax) == ["Dog"]
    (audio_0, audio_1), (visual_0, visual_1) = scale_of(ax)
    audio, visual = probability_lines(ax)
    for line, (zero, one), modality in ((audio, (audio_0, audio_1), 0), (visual, (visual_0, visual_1), 1)):
        read = (np.asarray(line.get_ydata()) - zero) / (one - zero)
        assert read[:-1] == pytest.approx(probs[:, modality, dog])
    thresholds = [collection for collection in ax.collections if isinstance(collection, LineCollection)]
    heights = sorted((segment[0][1] for collection in thresholds for segment in collection.get_segments()),
                     reverse=True)
    assert heights == pytest.approx([(audio_0 + audio_1) / 2, (visual_0 + visual_1) / 2])
    assert all(collection.get_linestyle()[0][1] is not None for collection in thresholds)   # dashed
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels[-2:] == ["segment probability (0-1)", "threshold 0.5"]
    assert not fig.texts   # no warnings, no box


def test_nothing_predicted_nor_annotated_shows_the_three_most_probable_classes():
    empty = np.zeros((NUM_CLASSES, NUM_SEGMENTS), dtype=bool)
    probs = np.full((NUM_SEGMENTS, 2, NUM_CLASSES), 0.2)
    audio_gate, visual_gate = np.full(NUM_CLASSES, 0.1), np.full(NUM_CLASSES, 0.1)
    audio_gate[CLASS_INDEX["Speech"]], visual_gate[CLASS_INDEX["Car"]], audio_gate[CLASS_INDEX["Dog"]] = 0.45, 0.4, 0.3
    panel = Panel("DHHN", empty, empty, frame_prob=probs, audio_prob=audio_gate, visual_prob=visual_gate)
    assert top_classes([panel]) == [CLASS_INDEX["Speech"], CLASS_INDEX["Car"], CLASS_INDEX["Dog"]]
    fig = parsing_figure(empty, empty, [panel], title="video_1")
    [ax] = fig.axes
    assert class_labels(ax) == ["Speech", "Car", "Dog"]
    assert len(probability_lines(ax)) == 6 and len(scale_of(ax)) == 6
    assert ax.get_title().replace("\n", " ") == ("DHHN nothing passes the threshold 0.5, nothing annotated; top 3 "
                                                 "classes by video-level probability shown")
    # without any probability there is nothing to rank: the strip says so
    bare = parsing_figure(empty, empty, [Panel("DHHN", empty, empty)])
    assert class_labels(bare.axes[0]) == [] and [t.get_text() for t in bare.axes[0].texts] == [
        "nothing predicted, nothing annotated"]


def test_top_classes_without_gates_rank_by_the_highest_segment_probability():
    empty = np.zeros((NUM_CLASSES, NUM_SEGMENTS), dtype=bool)
    probs = np.zeros((NUM_SEGMENTS, 2, NUM_CLASSES))
    probs[3, 1, 7], probs[0, 0, 2] = 0.3, 0.2
    assert top_classes([Panel("a", empty, empty, frame_prob=probs)], count=2) == [7, 2]
    assert top_classes([Panel("a", empty, empty)]) == []


def test_warnings_are_a_red_box_above_the_title_and_the_timeline():
    pred = np.zeros((NUM_CLASSES, NUM_SEGMENTS), dtype=bool)
    pred[0, :3] = True
    warnings = ["features from RANDOM weights (--random_weights, a smoke test): the events below say nothing "
                "about the videos", "DHHN was trained on the synthetic LLP"]
    fig = parsing_figure(None, None, [Panel("DHHN", pred, pred)], title="clip", warnings=warnings)
    [box] = [text for text in fig.texts if text is not fig._suptitle]
    assert " ".join(box.get_text().split()) == " ".join(f"warning: {text}" for text in warnings)
    assert box.get_text().count("\n") >= 2   # the long warning is wrapped to the figure
    assert box.get_color() == "#A50F15" and box.get_bbox_patch() is not None
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = box.get_bbox_patch().get_window_extent(renderer)
    title = fig._suptitle.get_window_extent(renderer)
    panel = fig.axes[0].get_tightbbox(renderer)
    assert 0 <= frame.x0 and frame.x1 <= fig.bbox.width and frame.y1 <= fig.bbox.height
    assert frame.y0 > title.y1 and title.y0 > panel.y1   # box, then title, then the timeline: no overlap
    assert CLASSES[0] in class_labels(fig.axes[0])
