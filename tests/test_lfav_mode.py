"""LFAV as a dataset of main_DHHN.py (--dataset lfav; PROTOCOL.md §16): the flags it refuses, its
inputs checked before any work, its selection rule, the per-modality weak labels as targets, the
masked segment losses, and train -> test end to end on a synthetic LFAV."""
import json
import math

import numpy as np
import pytest
import torch

from avvp_data.lfav import LFAV_CLASSES, feature_dirs, label_paths
from avvp_data.lfav_split import LFAVPaths, classes_without_positives, load_lfav_split
from avvp_data.synthetic_lfav import generate_synthetic_lfav
from config import LLP_ONLY_FLAGS, resolve_config
from conftest import main_fails, run_main
from main_DHHN import get_args_parser, given_flags
from modes.train import select_checkpoints, selection_roles
from recipes import RECIPES
from recipes.base import WeakLabelCriterion
from recipes.losses import segment_contrast_loss, segment_pseudo_label_loss
from utils import checkpoint
from utils.lfav_metrics import selection_score

# short videos, so that a run takes seconds; val and test have the 35 videos that cover every class
SMALL_LFAV = dict(n_train=32, n_val=35, n_test=35, min_length=20, max_length=40, seed=4)


def resolve(argv):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    return resolve_config(args, given_flags(parser, args))


@pytest.fixture(scope="module")
def lfav_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lfav_mode")
    generate_synthetic_lfav(str(root), **SMALL_LFAV)
    return root


def lfav_paths(root):
    folders = feature_dirs(str(root))
    return LFAVPaths(folders["audio"], folders["frames"], folders["snippets"], label_paths(str(root)))


# ------------------------------------------------------------------------------------------------
# flags

def test_lfav_fills_its_feature_folders_and_has_its_classes(tmp_path):
    config = resolve(["--dataset", "lfav", "--lfav_root", str(tmp_path)])
    folders = feature_dirs(str(tmp_path))
    assert (config.data.audio_dir, config.data.video_dir, config.data.st_dir) == (
        folders["audio"], folders["frames"], folders["snippets"])
    assert config.data.class_names == LFAV_CLASSES and config.data.description.segments is None
    assert config.data.label_train is None and config.data.llp_root is None
    assert config.data.lfav_paths.labels["val"]["audio_truth"].endswith("LFAV_dataset/val/val_audio.csv")
    explicit = resolve(["--dataset", "lfav", "--lfav_root", str(tmp_path), "--audio_dir", "own_audio"])
    assert explicit.data.audio_dir == "own_audio"
    assert resolve([]).data.class_names[0] == "Speech"   # LLP stays the default


@pytest.mark.parametrize("flag", ["--llp_root x", "--label_train x.csv", "--feature_names filename",
                                  "--feature_cache none", "--refined_labels r.pkl", "--export_dir e", "--cuda_graph",
                                  "--frame_dtype float16"])
def test_llp_only_flags_are_refused_with_lfav(flag, capsys):
    err = main_fails(["--dataset", "lfav", *flag.split()], capsys)
    assert f"{flag.split()[0]}: LLP only" in err


def test_every_llp_only_flag_is_a_flag():
    dests = {action.dest for action in get_args_parser()._actions}
    assert set(LLP_ONLY_FLAGS) <= dests


def test_lfav_refuses_refinement_modes_and_llp_refuses_lfav_root(capsys):
    for mode in ("retrain", "estimate_labels"):
        assert f"--mode {mode}: not available with --dataset lfav" in main_fails(
            ["--dataset", "lfav", "--mode", mode], capsys)
    assert "--lfav_root: only read with --dataset lfav" in main_fails(["--lfav_root", "x"], capsys)


def test_missing_lfav_inputs_are_listed_before_any_work(tmp_path, capsys):
    err = main_fails(["--dataset", "lfav", "--lfav_root", str(tmp_path), "--model_save_dir", str(tmp_path / "m")],
                     capsys, listing=True)
    assert "missing LFAV inputs" in err
    assert "train_weakly.csv: file not found" in err and "val_audio.csv: file not found" in err
    assert "audio-feat-vggish-align: folder not found" in err
    assert not (tmp_path / "m" / "DHHN_train_args.json").exists()


# ------------------------------------------------------------------------------------------------
# data, selection, targets and masked losses

def test_lfav_splits_sharing_a_video_are_refused(lfav_root, tmp_path, capsys):
    import shutil
    root = tmp_path / "overlap"
    shutil.copytree(lfav_root, root)
    paths = label_paths(str(root))
    shared = open(paths["test"]["video"]).read().splitlines()[1]
    with open(paths["val"]["video"], "a") as handle:
        handle.write(shared + "\n")
    err = main_fails(["--dataset", "lfav", "--lfav_root", str(root), "--mode", "test", "--model_save_dir",
                      str(tmp_path)], capsys, listing=True)
    assert "the splits are not disjoint" in err and f"(e.g. {shared.split(chr(9))[0]})" in err
    assert "val_weak_av.csv and " in err and "test_weak_av.csv share 1 video(s)" in err


def test_a_val_split_without_some_class_is_refused_naming_it(tmp_path, capsys):
    root = tmp_path / "few"
    generate_synthetic_lfav(str(root), n_train=4, n_val=3, n_test=1, min_length=20, max_length=30, seed=1)
    absent = classes_without_positives(load_lfav_split(lfav_paths(root), "val"))
    assert set(absent) == {"audio", "visual", "audio-visual"} and len(absent["audio-visual"]) > 25
    err = main_fails(["--dataset", "lfav", "--lfav_root", str(root), "--model_save_dir", str(tmp_path / "m"),
                      "--progress", "off"], capsys)
    assert "LFAV val: no positive snippet of audio: " in err and absent["audio-visual"][0] in err
    assert "no checkpoint would be kept" in err


def test_the_split_holds_videos_of_their_own_lengths_and_three_kinds_of_labels(lfav_root):
    split = load_lfav_split(lfav_paths(lfav_root), "val")
    assert split.num_videos == 35 and classes_without_positives(split) == {}
    assert len(set(split.lengths)) > 5 and 20 <= min(split.lengths) and max(split.lengths) <= 40
    for video, audio_truth, length in zip(split.videos, split.gt_audio, split.lengths):
        assert {kind: array.shape for kind, array in video.items()} == {
            "audio": (length, 128), "frames": (length, 512), "snippets": (length, 512)}
        assert audio_truth.shape == (35, length)
    # the video-level labels are the union of the modality ones, as the release's README says
    np.testing.assert_array_equal(split.labels, np.maximum(split.audio_labels, split.visual_labels))
    assert (split.audio_labels != split.visual_labels).any()
    assert split.feature_formats()["frames"] == "(T, 512): ResNet18 per 1-s snippet"


def test_a_broken_feature_file_is_named(lfav_root, tmp_path):
    import shutil
    root = tmp_path / "broken"
    shutil.copytree(lfav_root, root)
    paths = lfav_paths(root)
    name = next(iter(open(paths.labels["test"]["video"]).read().splitlines()[1:])).split("\t")[0]
    np.save(f"{paths.st_dir}/{name}.npy", np.zeros((3, 512), np.float32))
    with pytest.raises(Exception, match=f"'{name}': its features disagree on the number of 1-s snippets"):
        load_lfav_split(paths, "test")


def test_lfav_selection_scores_each_role_by_lfav_metrics_and_never_keeps_nan():
    config = resolve(["--dataset", "lfav", "--model", "dhhn"])
    roles = {role.name: role for role in selection_roles(config, RECIPES["dhhn"])}
    metrics = {"map_audio": 0.4, "map_visual": 0.2, "map_av": 0.3, "map_avg": 0.3, "evt_audio": 0.6,
               "evt_visual": 0.1, "evt_type": 0.5, "seg_type": 0.9}
    assert roles["audio"].score(metrics) == pytest.approx(0.5)
    assert roles["visual"].score(metrics) == pytest.approx(0.15)
    assert roles["overall"].score(metrics) == pytest.approx(selection_score(metrics)) == pytest.approx(0.4)
    assert not any(role.ties_to_later for role in roles.values())   # strictly better, as the release
    # LLP keeps the recipe's own rules
    assert selection_roles(resolve([]), RECIPES["dhhn"]) is RECIPES["dhhn"].selection
    ma_roles = selection_roles(resolve(["--dataset", "lfav", "--model", "ma"]), RECIPES["ma"])
    assert ma_roles == RECIPES["ma"].selection   # MA keeps its last epoch

    class Run:
        best = {name: -math.inf for name in roles}
        best_epoch = {name: None for name in roles}
    nan_metrics = {**metrics, "map_audio": float("nan"), "map_avg": float("nan")}
    assert select_checkpoints(roles.values(), nan_metrics, 1, Run) == ["visual"]
    assert select_checkpoints(roles.values(), metrics, 2, Run) == ["audio", "overall"]
    assert select_checkpoints(roles.values(), metrics, 3, Run) == []   # a tie keeps the earlier epoch


def test_modality_weak_labels_are_the_targets_of_the_modality_predictions():
    labels = torch.tensor([[1.0, 1.0, 0.0]])
    audio, visual = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    targets = WeakLabelCriterion.targets({"labels": labels, "audio_labels": audio, "visual_labels": visual})
    assert targets.audio is audio and targets.visual is visual and targets.global_ is labels
    smoothed = WeakLabelCriterion.targets({"labels": labels})   # LLP: P_v smoothed as published
    assert smoothed.visual[0].tolist() == pytest.approx([0.95, 0.95, 0.05])


def test_masked_segment_losses_equal_each_video_alone():
    torch.manual_seed(0)
    lengths = [9, 5, 7]
    mask = torch.arange(9)[None] < torch.tensor(lengths)[:, None]
    audio, visual = torch.randn(3, 9, 16), torch.randn(3, 9, 16)
    probs, targets = torch.rand(3, 9, 4), (torch.rand(3, 9, 4) > 0.5).float()
    alone = {"contrast": sum(segment_contrast_loss(audio[i:i + 1, :n], visual[i:i + 1, :n]) * n
                             for i, n in enumerate(lengths)) / sum(lengths),
             "pseudo": sum(segment_pseudo_label_loss(probs[i:i + 1, :n], targets[i:i + 1, :n]) * n
                           for i, n in enumerate(lengths)) / sum(lengths)}
    masked = {"contrast": segment_contrast_loss(audio, visual, mask=mask),
              "pseudo": segment_pseudo_label_loss(probs, targets, mask)}
    for name in alone:
        assert masked[name].item() == pytest.approx(alone[name].item(), abs=1e-6), name
    # without the mask the padding counts: the test can fail
    assert abs(segment_contrast_loss(audio, visual).item() - alone["contrast"].item()) > 1e-2
    full = torch.ones(3, 9, dtype=torch.bool)   # and a full mask is the unmasked loss
    assert segment_contrast_loss(audio, visual, mask=full).item() == pytest.approx(
        segment_contrast_loss(audio, visual).item(), abs=1e-6)
    audio.requires_grad_(True)
    segment_contrast_loss(audio, visual, mask=mask).backward()
    assert torch.isfinite(audio.grad).all() and audio.grad[1, 5:].abs().max() == 0


# ------------------------------------------------------------------------------------------------
# end to end

@pytest.mark.parametrize("model", ["dhhn", "han", "ma"])
def test_train_then_test_on_lfav(lfav_root, tmp_path, model, capsys):
    common = ["--dataset", "lfav", "--lfav_root", str(lfav_root), "--model", model, "--model_save_dir",
              str(tmp_path), "--progress", "off", "--device", "cpu"]
    summary = run_main(common + ["--epochs", "2", "--batch_size", "16"])
    assert [record["epoch"] for record in summary["history"]] == [1, 2]
    val = summary["history"][-1]["val"]
    assert {"map_audio", "map_visual", "map_av", "map_avg", "selection", "seg_type", "evt_type"} <= set(val)
    assert val["selection"] == pytest.approx((val["map_avg"] + val["evt_type"]) / 2)
    role = RECIPES[model].role_names[0]
    saved = checkpoint.load(checkpoint.best_path(str(tmp_path), "DHHN", role))
    assert tuple(saved["model_config"]["classes"]) == LFAV_CLASSES
    assert saved["config"]["data"]["dataset"] == "lfav"
    tested = run_main(common + ["--mode", "test"])
    first = next(iter(tested["tables"].values()))
    assert 0 <= first["map_avg"] <= 1 and 0 <= first["seg_audio"] <= 1
    out = capsys.readouterr().out
    assert "snippet mAP: audio " in out and "selection (mAP mean + Eve. Type@AV) / 2" in out
    with open(tmp_path / "DHHN_test_summary.json") as handle:
        assert json.load(handle)["num_videos"] == 35


def test_an_lfav_model_is_refused_on_llp_data(lfav_root, tmp_path, synthetic_root, capsys):
    common = ["--model_save_dir", str(tmp_path), "--progress", "off", "--device", "cpu", "--model", "han"]
    run_main(["--dataset", "lfav", "--lfav_root", str(lfav_root), "--epochs", "1", *common])
    capsys.readouterr()
    err = main_fails(["--mode", "test", "--llp_root", str(synthetic_root), *common], capsys)
    assert "was trained on LFAV's 35 classes, the data has LLP's 25 classes" in err


def test_parse_video_refuses_a_model_of_lfav_features_by_name():
    from parse_video import trained_inputs
    from utils.errors import UsageError
    formats = {"audio": "(T, 128): VGGish per 1-s snippet", "frames": "(T, 512): ResNet18 per 1-s snippet",
               "snippets": "(T, 512): R(2+1)D-18 per 1-s snippet"}
    with pytest.raises(UsageError, match=r"trained on audio features \(T, 128\): VGGish per 1-s snippet, which this "
                                         "project cannot extract from videos"):
        trained_inputs({"model_config": {"feature_formats": formats}})


def test_own_classes_in_lfavs_layout_order_the_class_axis_and_refuse_unknown_names(lfav_root, tmp_path):
    paths = lfav_paths(lfav_root)
    released = load_lfav_split(paths, "val")
    reversed_classes = LFAV_CLASSES[::-1]
    own = load_lfav_split(paths, "val", classes=reversed_classes)
    assert own.classes == reversed_classes
    np.testing.assert_array_equal(own.audio_labels, released.audio_labels[:, ::-1])
    for mine, theirs in zip(own.gt_visual, released.gt_visual):
        np.testing.assert_array_equal(mine, theirs[::-1])
    fewer = tuple(name for name in LFAV_CLASSES if name != "speech")
    with pytest.raises(Exception, match=r"'speech': not a class of the --classes list"):
        load_lfav_split(paths, "val", classes=fewer)


def test_an_lfav_run_on_an_own_class_list_records_it(lfav_root, tmp_path, capsys):
    classes_file = tmp_path / "classes.txt"
    classes_file.write_text("\n".join(LFAV_CLASSES[::-1]) + "\n")
    common = ["--dataset", "lfav", "--lfav_root", str(lfav_root), "--model", "han", "--model_save_dir", str(tmp_path),
              "--progress", "off", "--device", "cpu"]
    run_main(common + ["--epochs", "1", "--classes", str(classes_file)])
    saved = checkpoint.load(checkpoint.best_path(str(tmp_path), "DHHN", "overall"))
    assert tuple(saved["model_config"]["classes"]) == LFAV_CLASSES[::-1]
    capsys.readouterr()
    err = main_fails(common + ["--mode", "test"], capsys)
    assert "the data has LFAV's 35 classes (the same names in another order)" in err


def write_planted_pseudo_labels(root, out):
    """VALOR-layout pseudo-label folders {modality: folder} of the train split: the planted truth,
    (T, 35) per video."""
    from avvp_data.synthetic_lfav import event_masks, load_planted_truth
    names, lengths, events = load_planted_truth(str(root), "train")
    folders = {}
    for modality, masks in event_masks(lengths, events).items():
        folders[modality] = out / modality
        folders[modality].mkdir(parents=True)
        for name, mask in zip(names, masks):
            np.save(folders[modality] / f"{name}.npy", mask.T.astype(np.int64))
    return folders, names


def test_valors_recipe_trains_on_lfav_with_segment_pseudo_labels(lfav_root, tmp_path, capsys):
    folders, names = write_planted_pseudo_labels(lfav_root, tmp_path / "pseudo")
    common = ["--dataset", "lfav", "--lfav_root", str(lfav_root), "--model", "MMIL_Net", "--model_save_dir",
              str(tmp_path / "run"), "--progress", "off", "--device", "cpu", "--audio_pseudo_dir",
              str(folders["audio"]), "--visual_pseudo_dir", str(folders["visual"])]
    summary = run_main(common + ["--epochs", "1", "--batch_size", "16"])
    losses = summary["history"][0]["losses"]
    assert set(losses) == {"bce_global", "pseudo_audio", "pseudo_visual"}   # VALOR: the global BCE + both terms
    assert all(0 < value < 2 for value in losses.values())
    # a file of another length than its video is named before any work
    split = load_lfav_split(lfav_paths(lfav_root), "train")
    np.save(folders["visual"] / f"{names[3]}.npy", np.zeros((split.lengths[3] + 1, 35), np.int64))
    capsys.readouterr()
    err = main_fails(common + ["--epochs", "1", "--checkpoint", "other"], capsys, listing=True)
    assert f"{names[3]}.npy: shape ({split.lengths[3] + 1}, 35), expected ({split.lengths[3]}, 35)" in err


def test_pseudo_labels_are_padded_per_batch_with_their_videos(lfav_root, tmp_path):
    from avvp_data.tensor_split import PaddedSplit
    folders, names = write_planted_pseudo_labels(lfav_root, tmp_path / "pseudo")
    split = load_lfav_split(lfav_paths(lfav_root), "train", pseudo_dirs=folders)
    data = PaddedSplit("train", split.filenames, split.videos, split.labels, "cpu")
    data.add_sequences("audio_pseudo", split.pseudo_audio)
    batch = data.gather(torch.tensor([0, 5, 9]))
    assert batch["audio_pseudo"].shape == (3, batch["mask"].shape[1], 35)
    for row, index in enumerate((0, 5, 9)):
        length = split.lengths[index]
        np.testing.assert_array_equal(batch["audio_pseudo"][row, :length].numpy(), split.pseudo_audio[index])
        assert batch["audio_pseudo"][row, length:].sum() == 0
    with pytest.raises(ValueError, match="lengths are not those"):
        data.add_sequences("visual_pseudo", split.pseudo_visual[::-1])
