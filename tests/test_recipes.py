"""Model recipes: the per-model answers the modes ask for (recipes/), checkpoint selection, the
published defaults and ablation switches, and --llp_root."""
import math

import pytest

from config import resolve_config
from conftest import run_main, train_flags
from main_DHHN import get_args_parser
from modes.train import TrainingRun, select_checkpoints
from nets import build_han, count_parameters
from recipes import ABLATION_SWITCHES, RECIPES
from utils import checkpoint
from utils.errors import UsageError

DIMS = {"audio": 128, "frames": 2048, "snippets": 512}


def parse(*argv):
    return resolve_config(get_args_parser().parse_args(list(argv)))


def metrics(seg_audio=0.5, evt_audio=0.5, seg_visual=0.5, evt_visual=0.5, seg_type=0.5):
    return dict(seg_audio=seg_audio, evt_audio=evt_audio, seg_visual=seg_visual, evt_visual=evt_visual,
                seg_type=seg_type)


def fresh_run(recipe):
    return TrainingRun({}, {}, {}, None, best={r: -math.inf for r in recipe.role_names},
                       best_epoch={r: None for r in recipe.role_names})


def test_dhhn_keeps_each_role_on_its_own_strict_improvement():
    recipe = RECIPES["dhhn"]
    run = fresh_run(recipe)
    assert select_checkpoints(recipe.selection, metrics(), 1, run) == ["audio", "visual", "overall"]
    # audio (0.6 + 0.5) / 2 improves; visual (0.4 + 0.6) / 2 = 0.5 ties: kept at epoch 1
    better_audio = metrics(seg_audio=0.6, seg_visual=0.4, evt_visual=0.6)
    assert select_checkpoints(recipe.selection, better_audio, 2, run) == ["audio"]
    assert run.best_epoch == {"audio": 2, "visual": 1, "overall": 1}
    assert run.best["audio"] == pytest.approx(0.55)
    assert select_checkpoints(recipe.selection, metrics(seg_type=0.7), 3, run) == ["overall"]
    assert run.best_epoch == {"audio": 2, "visual": 1, "overall": 3}


def test_han_keeps_the_later_epoch_on_a_tie():
    recipe = RECIPES["han"]
    run = fresh_run(recipe)
    assert select_checkpoints(recipe.selection, metrics(seg_type=0.6), 1, run) == ["overall"]
    assert select_checkpoints(recipe.selection, metrics(seg_type=0.5), 2, run) == []
    assert select_checkpoints(recipe.selection, metrics(seg_type=0.6), 3, run) == ["overall"]
    assert run.best_epoch == {"overall": 3}


def test_rows_and_the_checkpoints_they_need():
    assert RECIPES["dhhn"].required_roles() == ("audio", "visual")
    assert [row.title for row in RECIPES["dhhn"].rows] == ["DHHN dual (best-audio + best-visual)", "HCMN best-overall"]
    assert RECIPES["han"].required_roles() == ("overall",)
    assert RECIPES["ma"].required_roles() == ("final",)
    # MA is scored as its release scores it: gated by a_prob / v_prob like DHHN
    assert [RECIPES[name].gating for name in ("dhhn", "han", "ma")] == ["modality", "global", "modality"]


def test_switches_a_model_lacks_are_refused_and_recorded_as_not_applicable():
    han = parse("--model", "han")
    assert [getattr(han.model, switch) for switch in ABLATION_SWITCHES] == [None] * 5
    assert [getattr(parse("--model", "ma").model, switch) for switch in ABLATION_SWITCHES] == [None] * 5
    dhhn = parse("--no_rmse")
    assert [getattr(dhhn.model, switch) for switch in ABLATION_SWITCHES] == [True, True, True, True, False]
    for flag in ("--no_hier_feat", "--no_hier_pred", "--no_audio_mgn", "--no_visual_mgn", "--no_rmse"):
        with pytest.raises(UsageError, match=f"{flag}: --model han has no such part"):
            parse("--model", "han", flag)


def test_guides_follow_the_switches_with_identical_initialisation():
    import torch
    recipe = RECIPES["dhhn"]
    torch.manual_seed(0)
    both = recipe.build_guides(parse(), DIMS)
    torch.manual_seed(0)
    visual_only = recipe.build_guides(parse("--no_audio_mgn"), DIMS)
    assert list(both) == ["audio_mgn", "visual_mgn"] and list(visual_only) == ["visual_mgn"]
    for (name, a), b in zip(both["visual_mgn"].state_dict().items(), visual_only["visual_mgn"].state_dict().values()):
        assert torch.equal(a, b), name
    assert RECIPES["han"].build_guides(parse("--model", "han"), DIMS) == {}
    assert RECIPES["dhhn"].learning_rates(parse()) == {"model": 3e-4, "audio_mgn": 2 * 3e-4, "visual_mgn": 0.2 * 3e-4}


def test_visual_mgn_layers_start_identical_then_train_apart():
    import torch
    visual_mgn = RECIPES["dhhn"].build_guides(parse(), DIMS)["visual_mgn"]
    first, second = visual_mgn.encoder.layers
    pairs = list(zip(first.state_dict().items(), second.state_dict().values()))
    assert len(pairs) == 12 and all(torch.equal(a, b) for (_, a), b in pairs)
    assert all(a.data_ptr() != b.data_ptr() for (_, a), b in pairs)   # copies, not shared weights
    optimizer = torch.optim.SGD(visual_mgn.parameters(), lr=0.1)
    visual_mgn(torch.randn(2, 80, 2048), torch.randn(2, 10, 512)).sum().backward()
    optimizer.step()
    assert not torch.equal(first.linear1.weight, second.linear1.weight)


def test_mgn_learning_rates_reach_the_optimizers():
    import torch

    from modes.train import build_training_run
    run = build_training_run(RECIPES["dhhn"], parse("--lr", "1e-3"), DIMS, torch.device("cpu"))
    assert [opt.param_groups[0]["lr"] for opt in run.optimizers.values()] == [1e-3, 2 * 1e-3, 0.2 * 1e-3]
    run = build_training_run(RECIPES["dhhn"], parse("--lr", "1e-3", "--mode", "retrain"), DIMS, torch.device("cpu"))
    assert [opt.param_groups[0]["lr"] for opt in run.optimizers.values()] == [1e-3] * 3


def test_refine_source_must_be_a_role_of_the_model():
    RECIPES["dhhn"].check_role("--refine_source", "visual")
    with pytest.raises(UsageError, match="--refine_source audio: --model han keeps the checkpoints overall"):
        RECIPES["han"].check_role("--refine_source", "audio")


def test_llp_root_fills_the_official_layout_and_explicit_flags_win(tmp_path):
    args = parse("--llp_root", str(tmp_path), "--label_val", "elsewhere/val.csv")
    assert args.data.audio_dir == str(tmp_path / "feats" / "vggish")
    assert args.data.video_dir == str(tmp_path / "feats" / "res152")
    assert args.data.st_dir == str(tmp_path / "feats" / "r2plus1d_18")
    assert args.data.label_train == str(tmp_path / "data" / "AVVP_train.csv")
    assert args.data.label_val == "elsewhere/val.csv"
    assert args.data.eval_visual_csv == str(tmp_path / "data" / "AVVP_eval_visual.csv")
    assert parse().data.audio_dir == "feats/vggish"   # the release's default, relative to the current folder
    # the 2020 copy of the audio truth, which scored the published numbers
    assert parse("--llp_root", str(tmp_path), "--eval_audio_version", "2020").data.eval_audio_csv == \
        str(tmp_path / "data" / "AVVP_eval_audio_2020.csv")
    with pytest.raises(UsageError, match="--eval_audio_version picks the file under --llp_root"):
        parse("--eval_audio_version", "2020", "--eval_audio_csv", "mine.csv")


def save_as_selected(model, config, save_dir, name, role):
    checkpoint.save(checkpoint.best_path(str(save_dir), name, role), model=model.state_dict(), model_config=config)


def test_checkpoints_of_another_model_are_refused_naming_both(synthetic_root, tmp_path, capsys):
    han = build_han(DIMS)
    assert count_parameters(han) == 4_569_675
    config = RECIPES["han"].model_config(parse("--model", "han"), DIMS)
    for role in ("audio", "visual", "overall"):
        save_as_selected(han, config, tmp_path, "HAN", role)
    with pytest.raises(SystemExit):
        run_main(train_flags(synthetic_root, tmp_path, "--mode", "test", "--checkpoint", "HAN"))
    err = capsys.readouterr().err
    assert "HAN_best_audio.pt holds a han model, not a --model dhhn one" in err
    assert err.count("\n") == 1


def test_a_missing_optional_row_is_skipped_with_a_note_a_corrupt_one_is_an_error(trained_run, tmp_path, capsys):
    save_dir, _ = trained_run
    for role in ("audio", "visual"):
        content = checkpoint.load(checkpoint.best_path(str(save_dir), "DHHN", role))
        checkpoint.save(checkpoint.best_path(str(tmp_path), "DHHN", role), **content)
    root = content["config"]["data"]["llp_root"]
    summary = run_main(train_flags(root, tmp_path, "--mode", "test"))
    assert list(summary["tables"]) == ["DHHN dual (best-audio + best-visual)"]
    assert "row 'HCMN best-overall' skipped: no overall checkpoint" in capsys.readouterr().out
    (tmp_path / "DHHN_best_overall.pt").write_bytes(b"damaged")
    with pytest.raises(SystemExit):
        run_main(train_flags(root, tmp_path, "--mode", "test"))
    assert "cannot read checkpoint" in capsys.readouterr().err
