"""Decision rules of other papers (PROTOCOL.md §14): hand-made probabilities with hand-computed
decisions per rule, equality of dhhn / han with the project's gatings, the val-only tuning of
CMPAE's per-class visual thresholds, and scripts/rescore.py --rule end to end on a tiny export."""
import json
import os
import shutil
import types

import numpy as np
import pytest
import torch

from avvp_data.llp import CLASSES, NUM_CLASSES, NUM_SEGMENTS
from nets.mmil_head import MMILHead
from reporting.decision_rules import (
    CMPAE_VISUAL_GRID,
    OUTPUT_RANGES,
    RANGE_TOLERANCE,
    RULES,
    DecisionRuleError,
    load_outputs,
    rule_predictions,
    score_rule,
    tune_visual_thresholds,
)
from reporting.export import export_predictions
from scripts import rescore
from utils.eval_metrics import evaluate_split, segment_predictions
from utils.io import file_sha256

AUDIO, VISUAL = 0, 1   # modality index of frame_prob (N, 10, 2, 25)
SPEECH, CAR, CHEERING, DOG, CAT, FRYING = range(6)
ROW = "Tiny model"
HEADLINE = [f"{level}_{column}" for level in ("seg", "evt") for column in ("audio", "visual", "av", "type", "event")]


def empty_outputs(num_videos):
    """All-zero outputs, float32 as exported."""
    return {"audio_prob": np.zeros((num_videos, NUM_CLASSES), np.float32),
            "visual_prob": np.zeros((num_videos, NUM_CLASSES), np.float32),
            "global_prob": np.zeros((num_videos, NUM_CLASSES), np.float32),
            "frame_prob": np.zeros((num_videos, NUM_SEGMENTS, 2, NUM_CLASSES), np.float32)}


def one_video_outputs():
    """One hand-made video; its decisions under every rule are HAND_DECISIONS."""
    outputs = empty_outputs(1)
    frame_prob = outputs["frame_prob"][0]
    # Speech, audio: segments 0.3, 0.6, 0.5, 0.25, 0.2 at t = 0..4; every gate exactly 0.5
    frame_prob[:5, AUDIO, SPEECH] = [0.3, 0.6, 0.5, 0.25, 0.2]
    for key in ("audio_prob", "visual_prob", "global_prob"):
        outputs[key][0, SPEECH] = 0.5
    # Car, audio: a sure segment at t = 5; a_prob 0.51 (passes 0.5, not 0.52); global 0.4
    frame_prob[5, AUDIO, CAR] = 0.9
    outputs["audio_prob"][0, CAR], outputs["global_prob"][0, CAR] = 0.51, 0.4
    # Cheering, audio: a weak segment 0.3 at t = 6; a_prob 0.53 (passes 0.52); global 0.6
    frame_prob[6, AUDIO, CHEERING] = 0.3
    outputs["audio_prob"][0, CHEERING], outputs["global_prob"][0, CHEERING] = 0.53, 0.6
    # Dog, visual: segments 0.3, 0.7 at t = 7, 8; v_prob 0.46 (passes 0.45 only); global 0
    frame_prob[[7, 8], VISUAL, DOG] = [0.3, 0.7]
    outputs["visual_prob"][0, DOG] = 0.46
    # Cat, visual: a segment 0.6 at t = 9; v_prob 0.9; global 0.3 (HAN's gate stays shut)
    frame_prob[9, VISUAL, CAT] = 0.6
    outputs["visual_prob"][0, CAT], outputs["global_prob"][0, CAT] = 0.9, 0.3
    return outputs


# rule -> ({class: positive audio segments}, {class: positive visual segments}), worked out by hand;
# cmpae with every visual threshold at 0.45
HAND_DECISIONS = {
    "dhhn": ({SPEECH: [1, 2], CAR: [5]}, {CAT: [9]}),
    "han": ({SPEECH: [1, 2]}, {}),
    "cmpae": ({SPEECH: [0, 1, 2, 3], CAR: [5], CHEERING: [6]}, {DOG: [7, 8], CAT: [9]}),
    "coleaf": ({CHEERING: [6]}, {CAT: [9]}),
}


def as_array(decisions, num_videos=1):
    """(num_videos, 25, 10) bool with video 0 positive at {class: segments}."""
    pred = np.zeros((num_videos, NUM_CLASSES, NUM_SEGMENTS), dtype=bool)
    for cls, segments in decisions.items():
        pred[0, cls, segments] = True
    return pred


def visual_thresholds(rule, **per_class):
    """(25,) thresholds at 0.45 (cmpae's untuned value) with some classes set; None for a fixed rule."""
    if not RULES[rule].tunes_thresholds:
        return None
    thresholds = np.full(NUM_CLASSES, 0.45)
    for cls, value in per_class.items():
        thresholds[CLASSES.index(cls)] = value
    return thresholds


# ---------------------------------------------------------------- the rules

def test_rule_table():
    expected = {"dhhn": (0.5, "audio_prob", 0.5, "visual_prob", 0.5, False),
                "han": (0.5, "global_prob", 0.5, "global_prob", 0.5, False),
                "cmpae": (0.25, "audio_prob", 0.45, "visual_prob", 0.45, True),
                "coleaf": (0.25, "audio_prob", 0.52, "visual_prob", 0.52, False)}
    assert {name: (rule.segment_threshold, rule.audio_gate, rule.audio_gate_threshold, rule.visual_gate,
                   rule.visual_gate_threshold, rule.tunes_thresholds) for name, rule in RULES.items()} == expected
    assert CMPAE_VISUAL_GRID == (0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
    assert [rule.is_protocol for rule in RULES.values()] == [True, False, False, False]
    assert RULES["han"].gate_description() == "segments >= 0.5; global_prob >= 0.5 gates both modalities"


@pytest.mark.parametrize("rule", list(HAND_DECISIONS))
def test_hand_made_decisions_per_rule(rule):
    pred_audio, pred_visual = rule_predictions(one_video_outputs(), rule, visual_thresholds(rule))
    audio, visual = HAND_DECISIONS[rule]
    np.testing.assert_array_equal(pred_audio, as_array(audio))
    np.testing.assert_array_equal(pred_visual, as_array(visual))


def test_cmpae_visual_thresholds_are_per_class():
    # Dog's v_prob 0.46 passes its threshold at 0.45, not at 0.5; Cat's 0.9 is untouched
    _, pred_visual = rule_predictions(one_video_outputs(), "cmpae", visual_thresholds("cmpae", Dog=0.5))
    np.testing.assert_array_equal(pred_visual, as_array({CAT: [9]}))
    with pytest.raises(DecisionRuleError, match="tuned on val"):
        rule_predictions(one_video_outputs(), "cmpae")
    with pytest.raises(ValueError, match="fixed visual gate"):
        rule_predictions(one_video_outputs(), "coleaf", np.full(NUM_CLASSES, 0.5))


@pytest.mark.parametrize("rule, gating", [("dhhn", "modality"), ("han", "global")])
def test_dhhn_and_han_rules_equal_the_project_gatings(rule, gating):
    generator = torch.Generator().manual_seed(7)
    outputs = {key: torch.rand(64, NUM_CLASSES, generator=generator)
               for key in ("audio_prob", "visual_prob", "global_prob")}
    outputs["frame_prob"] = torch.rand(64, NUM_SEGMENTS, 2, NUM_CLASSES, generator=generator)
    for key in outputs:   # values exactly at the threshold decide as >= does
        outputs[key].view(-1)[::9] = 0.5
    expected_audio, expected_visual = segment_predictions(outputs, gating)
    pred_audio, pred_visual = rule_predictions({key: value.numpy() for key, value in outputs.items()}, rule)
    np.testing.assert_array_equal(pred_audio, expected_audio.numpy())
    np.testing.assert_array_equal(pred_visual, expected_visual.numpy())


# ---------------------------------------------------------------- what the models output

def test_output_ranges_hold_what_the_mmil_head_outputs():
    """global_prob of HAN's MMIL pooling reaches almost 2 when each modality attends to a segment
    where the modality weight favours it; the others stay within [0, 1] up to float32 rounding."""
    torch.manual_seed(0)
    head = MMILHead(d_model=8, num_classes=3)
    with torch.no_grad():
        for parameter in head.parameters():   # sharp attention, saturated sigmoids
            parameter.mul_(20)
        outputs = head(torch.randn(1000, NUM_SEGMENTS, 2, 8))
    assert outputs["global_prob"].max() > 1.9
    for key, (low, high) in OUTPUT_RANGES.items():
        assert low - RANGE_TOLERANCE <= outputs[key].min() and outputs[key].max() <= high + RANGE_TOLERANCE, key
    assert OUTPUT_RANGES["global_prob"] == (0.0, 2.0)


def test_global_prob_above_1_is_accepted_and_gates_raw(tmp_path):
    outputs = one_video_outputs()
    outputs["global_prob"][0, SPEECH] = 1.6          # HAN's pooling of a sure video
    outputs["audio_prob"][0, CAR] = np.float32(1.0000001)   # a sum of softmax weights one ulp past 1
    npz_path = os.path.join(write_export(tmp_path / "export", "test", TEST_NAMES[:1], outputs), "tiny_model.npz")
    loaded = load_outputs(npz_path)
    assert loaded["global_prob"][0, SPEECH] == np.float32(1.6)   # kept raw, not clamped
    pred_audio, pred_visual = rule_predictions(loaded, "han")
    np.testing.assert_array_equal(pred_audio, as_array({SPEECH: [1, 2]}))
    np.testing.assert_array_equal(pred_visual, as_array({}))


@pytest.mark.parametrize("key, value, bounds, shown", [("global_prob", 2.5, "[0, 2]", "2.5"),
                                                         ("audio_prob", 1.2, "[0, 1]", "1.2"),
                                                         ("frame_prob", -0.1, "[0, 1]", "-0.1"),
                                                         ("visual_prob", np.nan, "[0, 1]", "nan")])
def test_values_no_model_outputs_are_refused(tmp_path, key, value, bounds, shown):
    outputs = one_video_outputs()
    outputs[key].flat[3] = value
    npz_path = tmp_path / "row.npz"
    np.savez(npz_path, filenames=np.array(TEST_NAMES[:1]), split=np.array("test"), **outputs)
    with pytest.raises(DecisionRuleError) as caught:
        load_outputs(str(npz_path))
    assert str(caught.value) == (f"{npz_path}: {key} must hold values in {bounds} (what the models output, "
                                 f"nets/mmil_head.py); found {shown}")


# ---------------------------------------------------------------- CMPAE's tuning on val

# Six val videos; each class lives in its own videos, so every class's objective moves only with its
# own threshold (the other videos add a constant). Visual segments on (0.9) over the whole row unless
# stated. (class, video, v_prob, visual truth over the whole row):
#   Speech  v0 0.42 truth, v1 0.38 no truth: t <= 0.35 -> v0 1 + v1 0 (FP); t = 0.40 -> v0 1 + v1 1
#           (empty video); t >= 0.45 -> v0 0 (FN) + v1 1; best 0.40
#   Car     v2 0.58 truth, v3 0.61 truth: t <= 0.55 -> 1 + 1; 0.60 -> 0 + 1; >= 0.65 -> 0; ties 0.25..0.55
#           go to the larger: 0.55
#   Cheering v4 0.5, no val positives: t <= 0.5 -> 0 (FP); t >= 0.55 -> 1 (empty video); ties: 0.70
#   Frying  v5 0.5 truth, segments on at even t only: 5 one-segment events, none with IoU >= 0.5 to the
#           truth event, so the event-level F is 0 at every t (ties: 0.70); a segment-level objective
#           would pick 0.50 (F 2/3 against 0)
#   every other class: no probability, no truth: all tie, 0.70
TUNED = np.full(NUM_CLASSES, 0.70)
TUNED[SPEECH], TUNED[CAR] = 0.40, 0.55
VAL_ROWS = [(SPEECH, 0, 0.42, True), (SPEECH, 1, 0.38, False), (CAR, 2, 0.58, True), (CAR, 3, 0.61, True),
            (CHEERING, 4, 0.5, False), (FRYING, 5, 0.5, True)]


def tuning_set():
    """(outputs, gt_audio, gt_visual) of the six hand-made val videos above."""
    outputs = empty_outputs(6)
    gt_visual = np.zeros((6, NUM_CLASSES, NUM_SEGMENTS), np.uint8)
    for cls, video, v_prob, has_truth in VAL_ROWS:
        outputs["visual_prob"][video, cls] = v_prob
        outputs["frame_prob"][video, :, VISUAL, cls] = 0.9
        gt_visual[video, cls] = has_truth
    outputs["frame_prob"][5, 1::2, VISUAL, FRYING] = 0.0
    return outputs, np.zeros_like(gt_visual), gt_visual


def test_tuning_hand_made_val_set():
    outputs, gt_audio, gt_visual = tuning_set()
    thresholds = tune_visual_thresholds(outputs, gt_audio, gt_visual, "val")
    np.testing.assert_array_equal(thresholds, TUNED)
    # the objective is the event-level visual F: Speech at 0.40 beats its neighbours
    score = {t: score_rule(outputs, gt_audio, gt_visual, "cmpae", visual_thresholds("cmpae", Speech=t))["evt_visual"]
             for t in (0.35, 0.40, 0.45)}
    assert score[0.40] > score[0.35] and score[0.40] > score[0.45]


def test_tuning_is_refused_on_anything_but_val():
    outputs, gt_audio, gt_visual = tuning_set()
    for split in ("test", "train"):
        with pytest.raises(DecisionRuleError, match="tuned on a val export only"):
            tune_visual_thresholds(outputs, gt_audio, gt_visual, split)
    with pytest.raises(ValueError, match="nothing to tune"):
        tune_visual_thresholds(outputs, gt_audio, gt_visual, "val", "coleaf")


# ---------------------------------------------------------------- scripts/rescore.py --rule

TEST_NAMES = ["tstvideo000_0_10", "tstvideo001_0_10"]
VAL_NAMES = [f"valvideo00{i}_0_10" for i in range(6)]
# eval rows (filename, onset, offset, class); test video 0 is `one_video_outputs`, video 1 predicts nothing
TEST_AUDIO_ROWS = [(TEST_NAMES[0], 1, 3, "Speech"), (TEST_NAMES[0], 6, 7, "Cheering"), (TEST_NAMES[1], 0, 10, "Car")]
TEST_VISUAL_ROWS = [(TEST_NAMES[0], 9, 10, "Cat"), (TEST_NAMES[0], 7, 9, "Dog")]
VAL_VISUAL_ROWS = [(VAL_NAMES[video], 0, 10, CLASSES[cls]) for cls, video, _, has_truth in VAL_ROWS if has_truth]


def write_eval_csv(path, rows):
    lines = ["filename\tonset\toffset\tevent_labels"] + [f"{name}\t{on}\t{off}\t{cls}" for name, on, off, cls in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def write_export(export_dir, split_name, filenames, outputs):
    split = types.SimpleNamespace(name=split_name, filenames=filenames, classes=CLASSES)
    tensors = {key: torch.from_numpy(value) for key, value in outputs.items()}
    export_predictions(str(export_dir), split, {ROW: (tensors, "modality")})
    return str(export_dir)


@pytest.fixture
def tiny_exports(tmp_path):
    """(test export, val export, eval flags, test truth (gt_audio, gt_visual)) written to tmp_path."""
    test_outputs = empty_outputs(2)
    for key, value in one_video_outputs().items():
        test_outputs[key][0] = value[0]
    test_dir = write_export(tmp_path / "test_export", "test", TEST_NAMES, test_outputs)
    val_dir = write_export(tmp_path / "val_export", "val", VAL_NAMES, tuning_set()[0])
    audio_csv = write_eval_csv(tmp_path / "eval_audio.csv", TEST_AUDIO_ROWS)
    visual_csv = write_eval_csv(tmp_path / "eval_visual.csv", TEST_VISUAL_ROWS + VAL_VISUAL_ROWS)
    gt_audio, gt_visual = (np.zeros((2, NUM_CLASSES, NUM_SEGMENTS), np.uint8) for _ in range(2))
    for truth, rows in ((gt_audio, TEST_AUDIO_ROWS), (gt_visual, TEST_VISUAL_ROWS)):
        for name, onset, offset, cls in rows:
            truth[TEST_NAMES.index(name), CLASSES.index(cls), onset:offset] = 1
    return test_dir, val_dir, ["--eval_audio_csv", audio_csv, "--eval_visual_csv", visual_csv], (gt_audio, gt_visual)


def run_rescore(argv):
    return rescore.main(rescore.get_args_parser().parse_args(argv))


def expected_scores(rule, gt, **visual_off):
    """evaluate_split of the hand-made decisions of test video 0 (video 1 predicts nothing)."""
    audio, visual = HAND_DECISIONS[rule]
    visual = {cls: segments for cls, segments in visual.items() if CLASSES[cls] not in visual_off}
    return evaluate_split(as_array(audio, 2), as_array(visual, 2), *gt)


@pytest.mark.parametrize("rule", ["dhhn", "han", "coleaf"])
def test_rescore_fixed_rules_end_to_end(tiny_exports, tmp_path, capsys, rule):
    test_dir, _, eval_flags, gt = tiny_exports
    results = run_rescore(["--export_dir", test_dir, "--rule", rule, "--out_json", str(tmp_path / "r.json"),
                           *eval_flags])
    expected = expected_scores(rule, gt)
    for key in HEADLINE:
        assert results[ROW][key] == pytest.approx(expected[key], abs=1e-12), key
    protocol = "the DHHN protocol" if rule == "dhhn" else "not the DHHN protocol"
    assert f"{ROW} (2 videos) [rule: {rule}, {protocol}]" in capsys.readouterr().out
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["rule"] == rule and saved["tuned_on"] is None
    assert saved["thresholds"][ROW] == {"segment": RULES[rule].segment_threshold,
                                        "audio_gate": RULES[rule].audio_gate_threshold,
                                        "visual_gate": RULES[rule].visual_gate_threshold}
    if rule == "dhhn":   # the run's own rule: as today's re-scoring of the exported event files
        default = run_rescore(["--export_dir", test_dir] + eval_flags)
        for key in HEADLINE:
            assert results[ROW][key] == pytest.approx(default[ROW][key], abs=1e-12), key


def test_rescore_cmpae_tunes_on_the_val_export(tiny_exports, tmp_path, capsys):
    test_dir, val_dir, eval_flags, gt = tiny_exports
    label_csv = tmp_path / "test_pd.csv"   # the videos in the other order: same means
    label_csv.write_text("filename\tevent_labels\n" + "".join(f"{name}\tSpeech\n" for name in reversed(TEST_NAMES)))
    results = run_rescore(["--export_dir", test_dir, "--rule", "cmpae", "--tune_on", val_dir, "--per_class",
                           "--label_csv", str(label_csv), "--out_json", str(tmp_path / "r.json")] + eval_flags)
    expected = expected_scores("cmpae", gt, Dog=True)   # Dog's v_prob 0.46 is under its tuned 0.70
    for key in HEADLINE:
        assert results[ROW][key] == pytest.approx(expected[key], abs=1e-12), key
    printed = capsys.readouterr().out
    assert f"{ROW} (2 videos) [rule: cmpae, not the DHHN protocol]\nvisual gate thresholds tuned on val" in printed
    assert f"tuned on val ({val_dir}): Speech 0.40, Car 0.55, Cheering 0.70, Dog 0.70" in " ".join(printed.split())
    assert f"{ROW} (2 videos) [rule: cmpae, not the DHHN protocol]: per-class F1" in printed
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["rule"] == "cmpae" and saved["tuned_on"] == val_dir and saved["protocol_default"] is False
    assert saved["thresholds"][ROW]["segment"] == 0.25 and saved["thresholds"][ROW]["audio_gate"] == 0.45
    assert saved["thresholds"][ROW]["visual_gate"] == dict(zip(CLASSES, TUNED.tolist()))

    # scoring the val export itself with its own thresholds is allowed, and said
    run_rescore(["--export_dir", val_dir, "--rule", "cmpae", "--tune_on", val_dir] + eval_flags)
    assert "the scored videos themselves" in " ".join(capsys.readouterr().out.split())


def refusal(argv, capsys):
    """The one-line error of scripts/rescore.py for `argv` (exit status 2 checked)."""
    assert rescore.cli(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and captured.err.count("\n") == 1
    return captured.err


def test_rescore_refusals(tiny_exports, tmp_path, capsys):
    test_dir, val_dir, eval_flags, _ = tiny_exports
    cmpae = ["--export_dir", test_dir, "--rule", "cmpae"]
    assert "val export only" in refusal(cmpae + ["--tune_on", test_dir] + eval_flags, capsys)
    assert "give --tune_on" in refusal(["--export_dir", test_dir, "--rule", "cmpae"] + eval_flags, capsys)
    assert "--tune_on is for a rule that tunes" in refusal(["--export_dir", test_dir, "--rule", "coleaf",
                                                             "--tune_on", val_dir] + eval_flags, capsys)
    assert "needs --export_dir" in refusal(["--pred_audio_csv", "a.csv", "--pred_visual_csv", "v.csv",
                                            "--label_csv", "l.csv", "--rule", "han"] + eval_flags, capsys)
    # a val export that shares videos with the scored test export
    two_val_videos = {key: value[:2] for key, value in tuning_set()[0].items()}
    shared = write_export(tmp_path / "shared_val", "val", VAL_NAMES[:1] + TEST_NAMES[:1], two_val_videos)
    assert "shares 1 video(s)" in refusal(cmpae + ["--tune_on", shared] + eval_flags, capsys)

    broken = tmp_path / "broken"
    shutil.copytree(test_dir, broken)
    npz_path = os.path.join(broken, "tiny_model.npz")
    with np.load(npz_path) as content:
        arrays = dict(content)
    arrays["frame_prob"] = arrays["frame_prob"][:, :, 0, :]   # (N, 10, 25): a wrong shape
    np.savez(npz_path, **arrays)
    message = refusal(["--export_dir", str(broken), "--rule", "coleaf"] + eval_flags, capsys)
    assert npz_path in message and "its sha256 differs" in message   # changed after the export
    manifest_path = broken / "manifest.json"   # a manifest that vouches for the broken file
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"]["tiny_model.npz"] = file_sha256(npz_path)
    manifest_path.write_text(json.dumps(manifest))
    message = refusal(["--export_dir", str(broken), "--rule", "coleaf"] + eval_flags, capsys)
    assert npz_path in message and "frame_prob has shape (2, 10, 25)" in message
    os.remove(npz_path)
    message = refusal(["--export_dir", str(broken), "--rule", "coleaf"] + eval_flags, capsys)
    assert npz_path in message and "no such file" in message
