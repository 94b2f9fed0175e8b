"""CLIP/CLAP features, segment pseudo-labels and VALOR's training options (PROTOCOL.md §13)."""
import dataclasses
import math
import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avvp_data.feature_cache import PackedFeatureCache
from avvp_data.feature_files import clap_maps_to_segments
from avvp_data.llp import CLAP_FEATURE_SHAPE, NUM_CLASSES, NUM_SEGMENTS
from avvp_data.synthetic_llp import load_planted_truth
from config import resolve_config
from conftest import data_flags, run_main
from dataloader import LLPPaths, load_features, load_pseudo_labels, load_split
from engine.optimization import warm_up_cosine_factor
from main_DHHN import get_args_parser
from modes.train import build_training_run, check_resume_config
from nets import build_han, count_parameters, default_feature_dims
from recipes import RECIPES
from recipes.base import TrainingModule, WeakLabelCriterion
from recipes.dhhn import DHHNCriterion
from recipes.losses import segment_pseudo_label_loss
from utils.errors import LLPDataError, UsageError

VIDEOS = ("aaaaaaaaaaa_0_10", "bbbbbbbbbbb_30_40", "ccccccccccc_5_15")
CLAP_ROWS, CLAP_DIM = CLAP_FEATURE_SHAPE
SMALL_CLAP_DIM = 24     # any width works; small keeps the end-to-end run fast
SMALL_CLIP_DIM = 20


def write_features(folder, shape, videos=VIDEOS, seed=0):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for name in videos:
        arrays[name] = rng.standard_normal(shape).astype(np.float32)
        np.save(os.path.join(folder, name[:11] + ".npy"), arrays[name])
    return arrays


def feature_dirs(root, audio_shape, frame_shape, snippet_shape=(10, 512)):
    dirs = {"audio": str(root / "audio"), "frames": str(root / "frames"), "snippets": str(root / "snippets")}
    arrays = {kind: write_features(dirs[kind], shape, seed=i)
              for i, (kind, shape) in enumerate(zip(dirs, (audio_shape, frame_shape, snippet_shape)))}
    return dirs, arrays


def valor_audio_branch(maps, linear):
    """VALOR's audio branch as its release computes it in the model (Linear inside the resampling),
    written out from its description: (B, 64, D) -> (B, 10, H)."""
    batch, rows, dim = maps.shape
    grid = maps.permute(0, 2, 1).contiguous().view(batch, dim, 2, rows // 2)
    upsampled = F.interpolate(grid, size=(2, 1024), mode="bicubic")
    projected = linear(upsampled.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).mean(dim=2)   # (B, H, 1024)
    return F.adaptive_avg_pool1d(projected, 10).permute(0, 2, 1)


# ------------------------------------------------------------------------------------------------
# features

def test_clip_frames_and_clap_maps_load_as_segment_vectors_and_say_what_they_are(tmp_path):
    dirs, arrays = feature_dirs(tmp_path, CLAP_FEATURE_SHAPE, (NUM_SEGMENTS, 768))
    features, layout = load_features(dirs, list(VIDEOS))
    assert features["audio"].shape == (3, NUM_SEGMENTS, CLAP_DIM)
    assert features["frames"].shape == (3, NUM_SEGMENTS, 768)
    assert layout == {"audio": (64, 768), "frames": (10, 768), "snippets": (10, 512)}
    expected = clap_maps_to_segments(np.stack([arrays["audio"][name] for name in VIDEOS]))
    np.testing.assert_allclose(features["audio"], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(features["frames"][1], arrays["frames"][VIDEOS[1]])


def test_clap_conversion_at_load_equals_valor_computing_it_in_the_model():
    torch.manual_seed(0)
    maps = torch.randn(4, CLAP_ROWS, CLAP_DIM)
    linear = torch.nn.Linear(CLAP_DIM, 512)
    in_model = valor_audio_branch(maps, linear)
    at_load = linear(torch.from_numpy(clap_maps_to_segments(maps.numpy())))
    assert in_model.shape == at_load.shape == (4, NUM_SEGMENTS, 512)
    torch.testing.assert_close(at_load, in_model, rtol=1e-4, atol=1e-5)


def test_clap_conversion_of_a_constant_map_is_that_constant():
    # the resampling weights of every output step sum to one: what lets the bias commute
    maps = np.full((1, CLAP_ROWS, 3), 2.5, dtype=np.float32)
    np.testing.assert_allclose(clap_maps_to_segments(maps), np.full((1, NUM_SEGMENTS, 3), 2.5), rtol=1e-6)


def test_bad_rows_and_mixed_kinds_are_all_reported_at_once(tmp_path):
    dirs, _ = feature_dirs(tmp_path, CLAP_FEATURE_SHAPE, (80, 64))
    np.save(os.path.join(dirs["audio"], "bbbbbbbbbbb.npy"), np.zeros((63, CLAP_DIM), np.float32))
    np.save(os.path.join(dirs["frames"], "ccccccccccc.npy"), np.zeros((10, 64), np.float32))
    with pytest.raises(LLPDataError) as error:
        load_features(dirs, list(VIDEOS))
    message = str(error.value)
    assert message.startswith("2 bad feature file(s):")
    assert "bbbbbbbbbbb.npy: shape (63, 768), expected (rows, dim) with rows 10 or 64" in message
    assert "ccccccccccc.npy: shape (10, 64), expected (80, 64) like the other frames files" in message


def test_the_packed_cache_serves_clap_features_with_their_layout(tmp_path):
    dirs, _ = feature_dirs(tmp_path, CLAP_FEATURE_SHAPE, (NUM_SEGMENTS, 32))
    cache = PackedFeatureCache(tmp_path / "cache")
    first, first_layout = load_features(dirs, list(VIDEOS), cache=cache)
    assert sorted(os.listdir(tmp_path / "cache"))[0].startswith("videos_audio")
    for name in VIDEOS:   # only the cache can answer now
        os.chmod(os.path.join(dirs["audio"], name[:11] + ".npy"), 0o644)
    again, again_layout = load_features(dirs, list(VIDEOS), cache=cache)
    assert again_layout == first_layout == {"audio": (64, 768), "frames": (10, 32), "snippets": (10, 512)}
    np.testing.assert_array_equal(again["audio"], first["audio"])


# ------------------------------------------------------------------------------------------------
# pseudo-labels

def write_pseudo(folder, values_by_video):
    os.makedirs(folder, exist_ok=True)
    for name, values in values_by_video.items():
        np.save(os.path.join(folder, name[:11] + ".npy"), values)


def test_pseudo_labels_load_and_every_problem_is_listed(tmp_path):
    good = np.zeros((NUM_SEGMENTS, NUM_CLASSES), dtype=np.int64)
    good[2:5, 3] = 1
    write_pseudo(tmp_path / "audio", {VIDEOS[0]: good, VIDEOS[1]: good, VIDEOS[2]: good})
    labels = load_pseudo_labels({"audio": str(tmp_path / "audio")}, list(VIDEOS))
    assert labels["audio"].shape == (3, NUM_SEGMENTS, NUM_CLASSES) and labels["audio"].dtype == np.float32
    assert labels["audio"][1].sum() == 3 and labels["audio"][1, 3, 3] == 1
    write_pseudo(tmp_path / "visual", {VIDEOS[0]: good.T, VIDEOS[1]: good * 0.5})
    with pytest.raises(LLPDataError) as error:
        load_pseudo_labels({"audio": str(tmp_path / "audio"), "visual": str(tmp_path / "visual")}, list(VIDEOS))
    message = str(error.value)
    assert message.startswith("3 bad pseudo-label file(s):")
    assert "aaaaaaaaaaa.npy: shape (25, 10), expected (10, 25) (segment x class)" in message
    assert "bbbbbbbbbbb.npy: values other than 0 and 1 (dtype float64)" in message
    assert "ccccccccccc.npy: missing" in message


def test_the_pseudo_label_loss_on_a_hand_computed_case():
    prob = torch.tensor([[[0.8, 0.1], [0.5, 1.0]]])     # (B=1, T=2, C=2)
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    # BCE = -mean(log .8, log .9, log .5, log(1 - 1e-7)): the last probability is clamped
    expected = -(math.log(0.8) + math.log(0.9) + math.log(0.5) + math.log(1 - 1e-7)) / 4
    assert segment_pseudo_label_loss(prob, target).item() == pytest.approx(expected, rel=1e-6)


def batch_with_pseudo(num_videos=2):
    rng = np.random.default_rng(0)
    return {"audio": torch.randn(num_videos, 10, 128), "frames": torch.randn(num_videos, 10, 2048),
            "snippets": torch.randn(num_videos, 10, 512),
            "labels": torch.from_numpy((rng.random((num_videos, 25)) < 0.3).astype(np.float32)),
            "audio_pseudo": torch.from_numpy((rng.random((num_videos, 10, 25)) < 0.2).astype(np.float32)),
            "visual_pseudo": torch.from_numpy((rng.random((num_videos, 10, 25)) < 0.2).astype(np.float32))}


def test_every_criterion_adds_the_named_pseudo_terms_with_their_weight():
    torch.manual_seed(0)
    batch = batch_with_pseudo()
    outputs = TrainingModule(build_han(default_feature_dims())).eval()(batch)
    plain = WeakLabelCriterion()(outputs, batch)
    assert list(plain) == ["bce_audio", "bce_visual", "bce_global", "pseudo_audio", "pseudo_visual"]
    expected = segment_pseudo_label_loss(outputs["frame_prob"][:, :, 0], batch["audio_pseudo"])
    torch.testing.assert_close(plain["pseudo_audio"], expected)
    weighted = WeakLabelCriterion(weak_loss="global", pseudo_weight=0.5)(outputs, batch)
    assert list(weighted) == ["bce_global", "pseudo_audio", "pseudo_visual"]
    torch.testing.assert_close(weighted["pseudo_visual"], 0.5 * plain["pseudo_visual"])
    without = {key: value for key, value in batch.items() if not key.endswith("_pseudo")}
    assert list(WeakLabelCriterion()(outputs, without)) == ["bce_audio", "bce_visual", "bce_global"]


def test_dhhn_with_pseudo_labels_and_optionally_its_guides():
    torch.manual_seed(0)
    batch = batch_with_pseudo()
    args = parse()
    recipe = RECIPES["dhhn"]
    module = recipe.training_module(recipe.build_model(recipe.model_config(args, default_feature_dims())),
                                    recipe.build_guides(args, default_feature_dims())).eval()
    outputs = module(batch)
    losses = DHHNCriterion()(outputs, batch)
    assert {"pseudo_audio", "pseudo_visual"} <= set(losses) and not any(key.startswith("mgn_pseudo") for key in losses)
    with_guides = DHHNCriterion(pseudo_mgn=True)(outputs, batch)
    expected = segment_pseudo_label_loss(outputs["visual_guide_segments"], batch["visual_pseudo"])
    torch.testing.assert_close(with_guides["mgn_pseudo_visual"], expected)
    assert outputs["audio_guide_segments"].shape == (2, 10, 25)


# ------------------------------------------------------------------------------------------------
# VALOR's flags, network and schedule

def parse(*argv):
    return resolve_config(get_args_parser().parse_args(list(argv)))


def test_valors_flag_names_are_accepted_as_aliases(capsys):
    args = parse("--mode", "train", "--model", "MMIL_Net", "--model_name", "model_VALOR", "--batch_size", "64",
                 "--a_pseudo_data_dir", "A", "--v_pseudo_data_dir", "V", "--norm_where", "post_norm",
                 "--hidden_dim", "512", "--nhead", "8", "--ff_dim", "1024", "--num_layers", "1")
    assert (args.model.name, args.run.checkpoint, args.optim.batch_size) == ("han", "model_VALOR", 64)
    assert (args.data.audio_pseudo_dir, args.data.visual_pseudo_dir, args.optim.pseudo_weight) == ("A", "V", 1.0)
    assert (args.optim.weak_loss, args.model.han_update, args.model.nhead, args.model.ff_dim) == (
        "global", "sequential", 8, 1024)
    assert "--model MMIL_Net: --model han --weak_loss global --han_update sequential" in capsys.readouterr().out
    # as published unless asked
    plain = parse("--model", "han")
    assert (plain.optim.weak_loss, plain.model.han_update, plain.model.nhead, plain.model.ff_dim,
            plain.optim.optimizer) == (
        "all", "parallel", 1, 512, "adam")


def test_settings_a_model_does_not_have_are_refused():
    with pytest.raises(UsageError, match="--nhead: --model dhhn has no such setting"):
        parse("--model", "dhhn", "--nhead", "8")
    with pytest.raises(UsageError, match="--pseudo_mgn: --model han has no such setting"):
        parse("--model", "han", "--pseudo_mgn", "--audio_pseudo_dir", "A")
    with pytest.raises(UsageError, match="--pseudo_weight: no pseudo-labels to weigh"):
        parse("--pseudo_weight", "2")
    with pytest.raises(UsageError, match="--warm_up_epoch 10: must be below --epochs 10"):
        parse("--scheduler", "warm_up_cos_anneal", "--warm_up_epoch", "10")
    with pytest.raises(UsageError, match="--hidden_dim 100: must be divisible by --nhead 8"):
        parse("--model", "han", "--hidden_dim", "100", "--nhead", "8")


def test_valors_network_has_valors_parameter_count_and_update_order():
    dims = default_feature_dims()
    # VALOR's MMIL_Net (hidden 512, 8 heads, ff 1024, 1 layer) without its two final LayerNorms,
    # which post_norm never uses: 3 heads of 12,825 + projections 1,902,592 + the layer 3,153,408
    assert count_parameters(build_han(dims, 512, 8, 1024, 1, "sequential")) == 5_094_475
    assert count_parameters(build_han(dims, 256, 8, 1024, 4, "sequential")) == 5_051_211
    torch.manual_seed(0)
    parallel = build_han(dims, 64, 8, 128, 2, "parallel").eval()
    sequential = build_han(dims, 64, 8, 128, 2, "sequential").eval()
    sequential.load_state_dict(parallel.state_dict())
    inputs = (torch.randn(2, 10, 128), torch.randn(2, 80, 2048), torch.randn(2, 10, 512))
    with torch.no_grad():
        audio_p, visual_p = (out[:, :, i] for out in [parallel(*inputs)["frame_prob"]] for i in (0, 1))
        audio_s, visual_s = (out[:, :, i] for out in [sequential(*inputs)["frame_prob"]] for i in (0, 1))
    assert audio_p.shape == visual_s.shape == (2, 10, 25)
    assert not torch.allclose(visual_p, visual_s)   # the visual update reads another audio sequence


def test_warm_up_cosine_is_valors_schedule_epoch_by_epoch():
    ratio = 1e-6 / 1e-4
    assert warm_up_cosine_factor(1, 10, 60, ratio) == pytest.approx(0.1)
    assert warm_up_cosine_factor(9, 10, 60, ratio) == pytest.approx(0.9)
    assert warm_up_cosine_factor(10, 10, 60, ratio) == pytest.approx(1.0)
    assert warm_up_cosine_factor(35, 10, 60, ratio) == pytest.approx(ratio + 0.5 * (1 - ratio))
    assert warm_up_cosine_factor(60, 10, 60, ratio) == pytest.approx(ratio)
    args = parse("--model", "han", "--optimizer", "adamw", "--weight_decay", "1e-3", "--beta1", "0.5",
                 "--scheduler", "warm_up_cos_anneal", "--warm_up_epoch", "2", "--epochs", "6", "--lr", "1e-4",
                 "--lr_min", "1e-6", "--hidden_dim", "32", "--ff_dim", "32")
    run = build_training_run(RECIPES["han"], args, {"audio": 8, "frames": 8, "snippets": 8}, torch.device("cpu"))
    optimizer = run.optimizers["model"]
    assert isinstance(optimizer, torch.optim.AdamW)
    group = optimizer.param_groups[0]
    assert (group["weight_decay"], group["betas"], group["eps"]) == (1e-3, (0.5, 0.999), 1e-8)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()   # no gradients: changes nothing, but keeps the scheduler's order check quiet
        run.schedulers["model"].step()
    expected = [1e-4 * warm_up_cosine_factor(epoch, 2, 6, 0.01) for epoch in range(1, 7)]
    assert rates == pytest.approx(expected)
    assert rates[0] == pytest.approx(0.5e-4) and rates[-1] == pytest.approx(1e-6)


def test_a_cosine_run_cannot_be_resumed_with_more_epochs():
    args = parse("--scheduler", "warm_up_cos_anneal", "--epochs", "12", "--resume")
    recorded = {**args.flags(), "epochs": 10, "resume": False}
    with pytest.raises(UsageError, match="--scheduler warm_up_cos_anneal is shaped by the number of epochs"):
        check_resume_config(recorded, args, 10, "x_last.pt")


# ------------------------------------------------------------------------------------------------
# end to end: CLIP/CLAP-shaped features and pseudo-labels of the planted truth

def clap_like_maps(audio_truth, rng):
    """(64, D) maps of one video from its (25, 10) audio truth: as VALOR's conversion reads them,
    rows j and 32 + j both describe time (j + 0.5) * 10 / 32 s."""
    prototypes = np.random.default_rng(7).standard_normal((NUM_CLASSES, SMALL_CLAP_DIM)).astype(np.float32)
    half = CLAP_ROWS // 2
    segment_of_row = (np.arange(half) * NUM_SEGMENTS) // half
    per_time = 3.0 * audio_truth.T[segment_of_row] @ prototypes          # (32, D)
    return (np.concatenate([per_time, per_time]) + rng.standard_normal((CLAP_ROWS, SMALL_CLAP_DIM))).astype(np.float32)


@pytest.fixture(scope="module")
def modern_root(synthetic_root, tmp_path_factory):
    """The synthetic LLP's annotations with CLAP-like maps (64, 24), CLIP-like frames (10, 20) and
    exact segment pseudo-labels, made from its planted truth."""
    root = tmp_path_factory.mktemp("modern_llp")
    shutil.copytree(synthetic_root / "data", root / "data")
    shutil.copytree(synthetic_root / "feats" / "r2plus1d_18", root / "feats" / "r2plus1d_18")
    rng = np.random.default_rng(0)
    visual_prototypes = rng.standard_normal((NUM_CLASSES, SMALL_CLIP_DIM)).astype(np.float32)
    for split in ("train", "val", "test"):
        filenames, audio, visual = load_planted_truth(str(root), split)
        for name, audio_truth, visual_truth in zip(filenames, audio, visual):
            video_id = name[:11]
            for folder, array in (
                    ("CLAP/features", clap_like_maps(audio_truth, rng)),
                    ("CLIP/features", (3.0 * visual_truth.T @ visual_prototypes
                                       + rng.standard_normal((NUM_SEGMENTS, SMALL_CLIP_DIM))).astype(np.float32)),
                    ("CLAP/segment_pseudo_labels", audio_truth.T.astype(np.float32)),
                    ("CLIP/segment_pseudo_labels", visual_truth.T.astype(np.float32))):
                os.makedirs(root / folder, exist_ok=True)
                np.save(root / folder / f"{video_id}.npy", array)
    return root


def modern_flags(root, save_dir, *extra):
    return data_flags(root) + ["--audio_dir", str(root / "CLAP/features"), "--video_dir", str(root / "CLIP/features"),
                               "--model_save_dir", str(save_dir), "--device", "cpu", *extra]


def test_han_trains_on_clip_clap_with_pseudo_labels_and_records_the_features(modern_root, tmp_path, capsys):
    paths = dataclasses.replace(LLPPaths.official(modern_root), audio_dir=str(modern_root / "CLAP/features"),
                                video_dir=str(modern_root / "CLIP/features"))
    split = load_split(paths, "val")
    assert split.feature_dims() == {"audio": SMALL_CLAP_DIM, "frames": SMALL_CLIP_DIM, "snippets": 512}
    flags = modern_flags(modern_root, tmp_path, "--model", "han", "--checkpoint", "PL", "--epochs", "8",
                         "--batch_size", "16", "--a_pseudo_data_dir", str(modern_root / "CLAP/segment_pseudo_labels"),
                         "--v_pseudo_data_dir", str(modern_root / "CLIP/segment_pseudo_labels"),
                         "--optimizer", "adamw", "--grad_norm", "1.0", "--lr", "1e-3")
    summary = run_main(["--mode", "train", *flags])
    losses = summary["history"][-1]["losses"]
    assert set(losses) == {"bce_audio", "bce_visual", "bce_global", "pseudo_audio", "pseudo_visual"}
    assert summary["history"][-1]["losses"]["pseudo_audio"] < summary["history"][0]["losses"]["pseudo_audio"]
    saved = torch.load(tmp_path / "PL_best_overall.pt", weights_only=False)
    assert saved["model_config"]["feature_formats"]["audio"].startswith("(64, 24): CLAP feature maps")
    assert saved["model_config"]["feature_formats"]["frames"].startswith("(10, 20): one frame per segment")
    test = run_main(["--mode", "test", *modern_flags(modern_root, tmp_path, "--model", "han", "--checkpoint", "PL")])
    # exact pseudo-labels of well separated features: the parser learns the segments
    assert test["tables"]["HAN best (val Type@AV seg.)"]["seg_audio"] > 0.5
    capsys.readouterr()
    # the same sizes, another kind: CLIP-like frames copied 8 times per segment are refused
    frames_80 = tmp_path / "frames80"
    os.makedirs(frames_80)
    for entry in os.listdir(modern_root / "CLIP/features"):
        np.save(frames_80 / entry, np.repeat(np.load(modern_root / "CLIP/features" / entry), 8, axis=0))
    flags = modern_flags(modern_root, tmp_path, "--model", "han", "--checkpoint", "PL")
    flags[flags.index("--video_dir") + 1] = str(frames_80)
    with pytest.raises(SystemExit):
        run_main(["--mode", "test", *flags])
    assert "was trained on other features" in capsys.readouterr().err


def test_valors_train_script_flags_run_through_this_entry_point():
    """The flags of VALOR's scripts/train_valor++.sh, only the entry point changed."""
    argv = ("--seed 87 --mode train --model MMIL_Net --model_name model_VALOR++_reproduce --batch_size 64 "
            "--epochs 60 --audio_dir ./data/CLAP/features --video_dir ./data/CLIP/features "
            "--st_dir ./data/feats/r2plus1d_18 --label_train ./data/AVVP_train.csv --label_val ./data/AVVP_val_pd.csv "
            "--label_test ./data/AVVP_test_pd.csv --optimizer adamw --weight_decay 1e-3 "
            "--scheduler warm_up_cos_anneal --warm_up_epoch 10 --grad_norm 1.0 --lr 3e-4 --lr_min 3e-6 --beta1 0.5 "
            "--eps 1e-8 --hidden_dim 256 --nhead 8 --ff_dim 1024 --num_layers 4 --norm_where post_norm "
            "--v_pseudo_data_dir ./data/CLIP/segment_pseudo_labels "
            "--a_pseudo_data_dir ./data/CLAP/segment_pseudo_labels").split()
    args = parse(*argv)
    assert (args.model.name, args.run.checkpoint, args.run.seed, args.optim.epochs, args.optim.batch_size) == (
        "han", "model_VALOR++_reproduce", 87, 60, 64)
    model, optim = args.model, args.optim
    assert (model.hidden_dim, model.nhead, model.ff_dim, model.num_layers, model.han_update) == (
        256, 8, 1024, 4, "sequential")
    assert (optim.optimizer, optim.weight_decay, optim.beta1, optim.beta2, optim.eps) == (
        "adamw", 1e-3, 0.5, 0.999, 1e-8)
    assert (args.optim.scheduler, args.optim.warm_up_epoch, args.optim.lr, args.optim.lr_min, args.optim.grad_norm) == (
        "warm_up_cos_anneal", 10, 3e-4, 3e-6, 1.0)
    assert (args.optim.weak_loss, args.data.audio_pseudo_dir) == ("global", "./data/CLAP/segment_pseudo_labels")
