"""Modality-aware label refinement (PROTOCOL.md §10): partner choice, the flag rule on hand-made
predictions, file formats (ours and the published pickle), estimate_labels -> retrain, flag quality."""
import pickle

import numpy as np
import pytest
import torch

from avvp_data.annotations import read_video_labels
from avvp_data.refinement_flags import RefinementError, read_refined_labels, to_published_lists, write_flags
from avvp_data.synthetic_llp import load_planted_truth
from conftest import SHARED_LLP, run_main, train_flags
from engine.label_refinement import choose_partners, flag_quality, flags_from_predictions


def test_partners_have_disjoint_labels_and_are_seeded():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 25)) < 0.08).astype(np.float32)
    # class 0 in every video but the last ten, which hold class 5 alone: the only possible partners
    labels[:, 0] = 1
    labels[:, 5] = 0
    labels[-10:] = 0
    labels[-10:, 5] = 1
    partners = choose_partners(labels, seed=3)
    assert (labels * labels[partners]).sum(axis=1).max() == 0
    assert np.array_equal(partners, choose_partners(labels, seed=3))
    assert not np.array_equal(partners, choose_partners(labels, seed=4))


def test_video_without_possible_partner_is_an_error():
    labels = np.ones((3, 25), dtype=np.float32)
    with pytest.raises(RefinementError, match="video 0"):
        choose_partners(labels, seed=0)


def test_flag_rule_on_hand_made_predictions():
    # 4 videos, classes 0 and 1 labelled in all of them.
    labels = np.zeros((4, 25))
    labels[:, :2] = 1
    # original predictions: class 0 audio right on 2 of 4 videos (error 0.5), class 1 on 3 of 4 (error 0.25)
    # every other class: prediction 0 = label 0, error 0 -> normaliser max(err) = 0.5
    original_audio = np.zeros((4, 25))
    original_audio[:2, 0] = 0.9
    original_audio[:3, 1] = 0.9
    original_visual = np.zeros((4, 25))
    original_visual[:, :2] = 0.9   # visual error 0 everywhere -> normaliser NaN -> never flags audio... see below
    original = {"audio_prob": original_audio, "visual_prob": original_visual}
    # na = [1.0, 0.5, 0, ...]; nv: all errors 0 -> NaN, so no visual flag can ever be raised
    visual_swapped = {"audio_prob": np.full((4, 25), 0.2), "visual_prob": np.full((4, 25), 0.2)}
    visual_swapped["audio_prob"][1, 1] = 0.3   # 0.3 / 0.5 = 0.6 >= 0.5 -> video 1 class 1 not flagged
    audio_swapped = {"audio_prob": np.zeros((4, 25)), "visual_prob": np.zeros((4, 25))}
    audio_flags, visual_flags = flags_from_predictions(labels, original, visual_swapped, audio_swapped)
    expected_audio = np.zeros((4, 25), dtype=bool)
    expected_audio[:, :2] = True        # 0.2/1.0 and 0.2/0.5 = 0.4 are below 0.5
    expected_audio[1, 1] = False
    assert np.array_equal(audio_flags, expected_audio)
    assert not visual_flags.any()
    # unlabelled classes are never flagged, whatever the swapped predictions
    assert not audio_flags[:, 2:].any()


def test_visual_flag_needs_both_swapped_predictions_low():
    labels = np.zeros((2, 25))
    labels[:, 0] = 1
    original = {"audio_prob": np.zeros((2, 25)), "visual_prob": np.zeros((2, 25))}  # visual error 1 on class 0
    visual_swapped = {"audio_prob": np.ones((2, 25)), "visual_prob": np.ones((2, 25))}
    audio_swapped = {"audio_prob": np.array([[0.4] + [0] * 24, [0.4] + [0] * 24]),
                     "visual_prob": np.array([[0.4] + [0] * 24, [0.6] + [0] * 24])}
    _, visual_flags = flags_from_predictions(labels, original, visual_swapped, audio_swapped)
    assert visual_flags[:, 0].tolist() == [True, False]


def test_flag_files_round_trip_in_both_formats(tmp_path):
    filenames = [f"video{i:06d}xx_0_10" for i in range(6)]
    audio_flags = np.zeros((6, 25), dtype=bool)
    visual_flags = np.zeros((6, 25), dtype=bool)
    audio_flags[1, 3] = audio_flags[4, 0] = True
    visual_flags[2, 24] = True
    pickle_path, csv_path = write_flags(str(tmp_path / "flags"), filenames, audio_flags, visual_flags)
    payload = pickle.load(open(pickle_path, "rb"))
    assert payload[0][24] == [2] and payload[1][3] == [1] and payload[1][0] == [4]   # [visual, audio]
    for path in (pickle_path, csv_path):
        audio, visual = read_refined_labels(path, filenames)
        assert np.array_equal(audio, audio_flags) and np.array_equal(visual, visual_flags)


def test_published_pickle_with_tensor_indices_is_read(tmp_path):
    lists = to_published_lists(np.zeros((30, 25), dtype=bool), np.eye(30, 25, dtype=bool))  # (audio, visual)
    as_tensors = [[[torch.tensor(i) for i in indices] for indices in modality] for modality in lists]
    path = tmp_path / "tensors.pkl"
    path.write_bytes(pickle.dumps(as_tensors))
    audio, visual = read_refined_labels(str(path), [f"v{i}" for i in range(30)])
    assert np.array_equal(visual, np.eye(30, 25, dtype=bool)) and not audio.any()


@pytest.mark.parametrize("payload, message", [
    ([[[]] * 25], "expected \\[visual_lists, audio_lists\\]"),
    ([[[]] * 25, [[99]] + [[]] * 24], "index 99 of Speech is outside the 10 training videos"),
    ([[["x"]] + [[]] * 24, [[]] * 25], "non-integer"),
])
def test_malformed_pickles_give_clear_errors(tmp_path, payload, message):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(RefinementError, match=message):
        read_refined_labels(str(path), [f"v{i}" for i in range(10)])


def test_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([np.zeros(1)] * 2))  # needs numpy globals: not allowed
    with pytest.raises(RefinementError, match="refusing to load"):
        read_refined_labels(str(path), ["v0"])


def test_csv_with_unknown_video_names_the_line(tmp_path):
    path = tmp_path / "flags.csv"
    path.write_text("filename\tevent_labels\tmodality\nv0\tSpeech\taudio\nghost\tDog\tvisual\n")
    with pytest.raises(RefinementError, match="line 3: 'ghost'"):
        read_refined_labels(str(path), ["v0"])


def flags_files(tmp_path):
    """(filenames, .pkl path, .csv path) of a small flags file written by write_flags."""
    filenames = [f"video{i:06d}xx_0_10" for i in range(4)]
    flags = np.zeros((4, 25), dtype=bool)
    flags[1, 3] = True
    pickle_path, csv_path = write_flags(str(tmp_path / "flags"), filenames, flags, flags)
    return filenames, pickle_path, csv_path


def test_pickle_named_csv_says_so(tmp_path):
    # Used to raise UnicodeDecodeError (a traceback) from the csv reader.
    filenames, pickle_path, _ = flags_files(tmp_path)
    misnamed = tmp_path / "need_to_change_MA.csv"
    misnamed.write_bytes(open(pickle_path, "rb").read())
    with pytest.raises(RefinementError) as error:
        read_refined_labels(str(misnamed), filenames)
    assert str(error.value) == (f"{misnamed}: not a tab-separated text file "
                                "(it looks like a pickle: use a .pkl name)")


@pytest.mark.parametrize("content, message", [
    (b"filename\tevent_labels\tmodality\n\xff\xfe\x00bad",
     "not a tab-separated text file (not UTF-8 text: line 2, byte 31 is b'\\xff')"),
    (b"filename\tevent_labels\tmodality\n\x00\x01\x02", "not a tab-separated text file (binary"),
    (b"", "empty file: line 1 should be the header row filename, event_labels, modality"),
    (b"\n\n", "empty file"),
    (b"filename\tevent_labels\tmodality\nvideo000001xx_0_10\tCat\taudio\nvideo000002xx_0_10\tDog\n",
     "line 3: 2 field(s), header has 3"),
    (b"filename\tevent_labels\tmodality\nvideo000001xx_0_10\tCat\taudio\textra\n",
     "line 2: 4 field(s), header has 3"),
    (b"filename,event_labels,modality\nvideo000001xx_0_10,Cat,audio\n",
     "expected tab-separated columns filename, event_labels, modality"),
])
def test_unusable_csv_flags_name_file_and_line(tmp_path, content, message):
    filenames, _, _ = flags_files(tmp_path)
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(RefinementError) as error:
        read_refined_labels(str(path), filenames)
    assert str(error.value).startswith(str(path)) and message in str(error.value)


def test_csv_flags_with_only_a_header_or_blank_lines_are_read(tmp_path):
    filenames, _, csv_path = flags_files(tmp_path)
    path = tmp_path / "none.csv"
    path.write_text("filename\tevent_labels\tmodality\n")
    audio, visual = read_refined_labels(str(path), filenames)
    assert not audio.any() and not visual.any()
    path.write_text(open(csv_path).read() + "\n\n")
    audio, visual = read_refined_labels(str(path), filenames)
    assert audio[1, 3] and visual[1, 3] and audio.sum() == visual.sum() == 1


def test_real_published_pickle_loads():
    path = SHARED_LLP / "need_to_change_MA.pkl"
    if not path.exists():
        pytest.skip("../shared/llp is not available")
    filenames, labels = read_video_labels(str(SHARED_LLP / "AVVP_train.csv"))
    audio, visual = read_refined_labels(str(path), filenames)
    assert (int(audio.sum()), int(visual.sum())) == (1528, 3591)
    assert not (audio & (labels == 0)).any() and not (visual & (labels == 0)).any()


def test_flag_quality_counts_on_hand_made_truth():
    labels = np.zeros((2, 25))
    labels[0, [0, 1]] = labels[1, 0] = 1
    planted_audio = np.zeros((2, 25, 10))
    planted_visual = np.zeros((2, 25, 10))
    planted_audio[0, 0, :3] = 1          # video 0: class 0 audio only, class 1 visual only
    planted_visual[0, 1, 5:] = 1
    planted_audio[1, 0] = planted_visual[1, 0] = 1   # video 1: class 0 audio-visual
    audio_flags = np.zeros((2, 25), dtype=bool)
    audio_flags[0, 1] = audio_flags[1, 0] = True     # one right, one wrong
    quality = flag_quality(audio_flags, np.zeros_like(audio_flags), labels, planted_audio, planted_visual)
    assert quality["audio"] == {"labelled": 3, "really_wrong": 1, "flagged": 2, "correct_flags": 1,
                                "precision": 0.5, "recall": 1.0, "random_precision": 1 / 3,
                                "random_recall": 2 / 3}
    assert quality["visual"]["really_wrong"] == 1 and np.isnan(quality["visual"]["precision"])


def test_estimate_labels_then_retrain(trained_run, synthetic_root):
    save_dir, _ = trained_run
    summary = run_main(train_flags(synthetic_root, save_dir, "--mode", "estimate_labels"))
    pickle_path, csv_path = summary["outputs"]
    filenames, labels = read_video_labels(f"{synthetic_root}/data/AVVP_train.csv")
    audio_flags, visual_flags = read_refined_labels(csv_path, filenames)
    assert np.array_equal((audio_flags, visual_flags), read_refined_labels(pickle_path, filenames))
    assert summary["flagged_audio"] == audio_flags.sum() and summary["flagged_visual"] == visual_flags.sum()

    # the flags find labels that the planted truth says are wrong far better than chance
    _, planted_audio, planted_visual = load_planted_truth(str(synthetic_root), "train")
    quality = flag_quality(audio_flags, visual_flags, labels, planted_audio, planted_visual)
    flagged = sum(quality[m]["flagged"] for m in quality)
    hits = sum(quality[m]["correct_flags"] for m in quality)
    base_rate = sum(quality[m]["really_wrong"] for m in quality) / sum(quality[m]["labelled"] for m in quality)
    assert flagged >= 10
    assert hits / flagged > base_rate + 0.2, quality

    retrained = run_main(train_flags(synthetic_root, save_dir, "--mode", "retrain", "--refined_labels", pickle_path,
                                     "--checkpoint", "DHHN_refined", "--epochs", "1"))
    assert retrained["config"]["optim"]["lr_visual_mgn"] == 3e-4 and len(retrained["history"]) == 1


def test_flags_on_unlabelled_classes_are_dropped_and_counted():
    from engine.label_refinement import restrict_to_labels
    labels = np.zeros((2, 25))
    labels[0, 3] = 1
    audio = np.zeros((2, 25), dtype=bool)
    visual = np.zeros((2, 25), dtype=bool)
    audio[0, 3] = audio[1, 3] = True     # the second is on an unlabelled class
    visual[0, 4] = True                  # unlabelled too
    kept_audio, kept_visual, dropped = restrict_to_labels(audio, visual, labels)
    assert dropped == 2
    assert kept_audio.sum() == 1 and kept_audio[0, 3] and not kept_visual.any()
