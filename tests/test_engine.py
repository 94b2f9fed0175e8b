"""Unit behaviour of the shared loops and losses: targets, loss terms, gating, the training step, batched
prediction."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import engine
from avvp_data.feature_files import pool_frames_per_segment
from avvp_data.tensor_split import TensorSplit
from nets import build_han, build_hcmn, build_mgns, default_feature_dims
from recipes.base import TrainingModule, WeakLabelCriterion
from recipes.dhhn import DHHNCriterion, DHHNTrainingModule
from recipes.losses import PROB_EPS, make_targets, mgn_losses, parsing_losses
from utils.eval_metrics import segment_predictions


def test_targets_without_and_with_refinement():
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    plain = make_targets(labels)
    assert plain.audio.tolist() == [[1.0, 0.0, 1.0]]
    assert torch.allclose(plain.visual, torch.tensor([[0.95, 0.05, 0.95]]))
    assert plain.global_.tolist() == [[1.0, 0.0, 1.0]]
    refined = make_targets(labels, audio_flags=torch.tensor([[True, False, False]]),
                           visual_flags=torch.tensor([[False, False, True]]))
    assert refined.audio.tolist() == [[0.0, 0.0, 1.0]]
    assert torch.allclose(refined.visual, torch.tensor([[0.95, 0.05, 0.0]]))   # smoothing elsewhere unchanged
    assert refined.global_.tolist() == refined.audio.tolist()                 # as published: aliased to P_a


def test_loss_terms_by_hand():
    outputs = {"audio_prob": torch.tensor([[0.8, 0.0]], requires_grad=True), "visual_prob": torch.tensor([[0.6, 1.0]]),
               "global_prob": torch.tensor([[0.9, 0.5]])}
    targets = make_targets(torch.tensor([[1.0, 0.0]]))
    guide_audio = torch.tensor([[0.4, 0.2]], requires_grad=True)
    losses = parsing_losses(outputs, targets, audio_guide=guide_audio, visual_guide=None)
    assert set(losses) == {"bce_audio", "bce_visual", "bce_global", "guide_audio", "rmse"}
    # audio: -(log 0.8 + log(1 - 1e-7)) / 2, the zero clamped to 1e-7 (PROTOCOL.md §7)
    expected_bce_audio = -(np.log(0.8) + np.log(1 - PROB_EPS)) / 2
    assert losses["bce_audio"].item() == pytest.approx(expected_bce_audio, rel=1e-5)
    # class 1: target 0.05, prediction 1.0 clamped to float32(1 - 1e-7)
    top = float(np.float32(1 - PROB_EPS))
    expected_bce_visual = -(0.95 * np.log(0.6) + 0.05 * np.log(0.4) + 0.05 * np.log(top)
                            + 0.95 * np.log(1 - top)) / 2
    assert losses["bce_visual"].item() == pytest.approx(expected_bce_visual, rel=1e-4)
    assert losses["guide_audio"].item() == pytest.approx(((0.8 - 0.4) ** 2 + (1e-7 - 0.2) ** 2) / 2, rel=1e-5)
    assert losses["rmse"].item() == pytest.approx(-((0.8 - 0.6) ** 2 + (1e-7 - (1 - 1e-7)) ** 2) / 2, rel=1e-5)
    losses["guide_audio"].backward()
    assert outputs["audio_prob"].grad is not None
    assert guide_audio.grad is None            # stop-gradient: the guide is not trained by the HCMN loss
    assert set(mgn_losses(None, torch.tensor([[0.5, 0.5]]), None, torch.tensor([[1.0, 0.0]]))) == {"mgn_bce_visual"}


def test_gating_rules_of_dhhn_and_han():
    frame_prob = torch.zeros(1, 10, 2, 25)
    frame_prob[0, 2:5, 0, 3] = 0.7     # audio segments 2-4 of class 3
    frame_prob[0, 6, 1, 3] = 0.5       # visual segment 6 of class 3 (>= 0.5 counts)
    outputs = {"frame_prob": frame_prob, "audio_prob": torch.zeros(1, 25), "visual_prob": torch.zeros(1, 25),
               "global_prob": torch.zeros(1, 25)}
    outputs["audio_prob"][0, 3] = 0.6
    outputs["visual_prob"][0, 3] = 0.4
    outputs["global_prob"][0, 3] = 0.5
    audio, visual = segment_predictions(outputs, "modality")
    assert audio.shape == (1, 25, 10)
    assert torch.nonzero(audio[0]).tolist() == [[3, 2], [3, 3], [3, 4]]
    assert not visual.any()                                    # v_prob 0.4 gates the visual segment off
    audio, visual = segment_predictions(outputs, "global")
    assert torch.nonzero(visual[0]).tolist() == [[3, 6]]       # HAN: the global 0.5 lets it through
    with pytest.raises(ValueError, match="gating"):
        segment_predictions(outputs, "audio")


@pytest.fixture(scope="module")
def tiny_split():
    rng = np.random.default_rng(0)
    return SimpleNamespace(
        name="tiny", filenames=[f"v{i}" for i in range(11)], labels=(rng.random((11, 25)) < 0.2).astype(np.float32),
        audio=rng.standard_normal((11, 10, 128)).astype(np.float32),
        frames=rng.standard_normal((11, 80, 2048)).astype(np.float32),
        snippets=rng.standard_normal((11, 10, 512)).astype(np.float32))


def test_prediction_does_not_depend_on_the_evaluation_batch_size(tiny_split):
    torch.manual_seed(0)
    model = build_hcmn({"audio": 128, "frames": 2048, "snippets": 512})
    data = TensorSplit(tiny_split, torch.device("cpu"))
    whole = engine.predict(model, data, batch_size=256, progress=False)
    pieces = engine.predict(model, data, batch_size=3, progress=False)
    assert whole["frame_prob"].shape == (11, 10, 2, 25)
    for key in whole:
        torch.testing.assert_close(pieces[key], whole[key], rtol=1e-5, atol=1e-6)


def test_swapped_prediction_uses_the_partner_features(tiny_split):
    torch.manual_seed(0)
    model = build_hcmn({"audio": 128, "frames": 2048, "snippets": 512}).eval()
    data = TensorSplit(tiny_split, torch.device("cpu"))
    partners = torch.tensor([3, 0, 1, 2, 5, 4, 7, 6, 9, 10, 8])
    swapped = engine.predict(model, data, batch_size=4, visual_source=partners, progress=False)
    frames = torch.from_numpy(pool_frames_per_segment(tiny_split.frames, 10))
    with torch.no_grad():
        manual = model(torch.from_numpy(tiny_split.audio), frames[partners],
                       torch.from_numpy(tiny_split.snippets)[partners])
    torch.testing.assert_close(swapped["visual_prob"], manual["visual_prob"], rtol=1e-5, atol=1e-6)


def test_frames_pooled_at_load_give_the_per_frame_projection(tiny_split):
    """PROTOCOL.md §3 projects every frame then averages; pooling first is the same linear map."""
    torch.manual_seed(0)
    model = build_hcmn({"audio": 128, "frames": 2048, "snippets": 512}).eval()
    pooled = engine.predict(model, TensorSplit(tiny_split, torch.device("cpu"), pool_frames=True), progress=False)
    per_frame = engine.predict(model, TensorSplit(tiny_split, torch.device("cpu"), pool_frames=False), progress=False)
    for key in pooled:
        torch.testing.assert_close(pooled[key], per_frame[key], rtol=1e-4, atol=1e-5)


DHHN_LOSSES = ["bce_audio", "bce_visual", "bce_global", "guide_audio", "guide_visual", "rmse",
               "mgn_bce_audio", "mgn_bce_visual", "mgn_rmse"]
HAN_LOSSES = ["bce_audio", "bce_visual", "bce_global"]


def dhhn_nets():
    audio_mgn, visual_mgn = build_mgns(default_feature_dims())
    return {"model": build_hcmn(default_feature_dims()), "audio_mgn": audio_mgn, "visual_mgn": visual_mgn}


@pytest.mark.parametrize("make_nets, training_module, criterion, expected", [
    (dhhn_nets,
     lambda nets: DHHNTrainingModule(nets["model"], {name: nets[name] for name in ("audio_mgn", "visual_mgn")}),
     DHHNCriterion(use_rmse=True), DHHN_LOSSES),
    (lambda: {"model": build_han(default_feature_dims())}, lambda nets: TrainingModule(nets["model"]),
     WeakLabelCriterion(), HAN_LOSSES),
], ids=["dhhn", "han"])
def test_train_step_returns_the_named_losses_and_updates_every_net(tiny_split, make_nets, training_module, criterion,
                                                                   expected):
    torch.manual_seed(0)
    nets = make_nets()
    optimizers = [torch.optim.Adam(net.parameters(), lr=1e-3) for net in nets.values()]
    step = engine.TrainStep(training_module(nets), criterion, optimizers)
    step.train()
    assert all(net.training for net in nets.values())
    before = {name: [p.detach().clone() for p in net.parameters()] for name, net in nets.items()}
    batch = TensorSplit(tiny_split, torch.device("cpu")).gather(torch.arange(4))
    losses = step(batch)
    assert list(losses) == expected
    assert all(value.dtype == torch.float32 and value.dim() == 0 and torch.isfinite(value)
               for value in losses.values())
    for name, net in nets.items():
        assert any(not torch.equal(old, new) for old, new in zip(before[name], net.parameters())), name
