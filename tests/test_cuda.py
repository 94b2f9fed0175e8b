"""The CUDA paths: device-resident training, `--cuda_graph` and `--autocast bf16` on a GPU.

Skipped without a CUDA device (CI has none); a GPU session runs them with
`python -m pytest -q tests/test_cuda.py`. The CPU side of the same machinery (batch routing,
warm-up without trace, the learning rate as a tensor) is tested in test_speed_paths.py.
"""
import pytest
import torch

import engine
from avvp_data.tensor_split import TensorSplit
from conftest import run_main, train_flags
from engine.cuda_graph import GraphedTrainStep
from test_speed_paths import small_split, small_training
from utils import checkpoint

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def cuda_training(dropout=0.0, autocast_dtype=None):
    """The training step (engine.TrainStep) of a small HCMN + MGNs on the GPU with fused Adam, as
    modes.train.build_training_run makes the optimizers on CUDA. dropout=0 makes graph and eager runs
    comparable number for number (no random masks)."""
    return small_training(device=CUDA, dropout=dropout, fused=True, autocast_dtype=autocast_dtype)


def train_epochs(data, epochs, batch_size, use_graph):
    step = cuda_training()
    graphed = (GraphedTrainStep(step, data, batch_size, step.nets.values(), step.optimizers)
               if use_graph else None)
    generator = torch.Generator().manual_seed(0)
    history = [engine.train_one_epoch(step, data, batch_size, generator, graphed_step=graphed, progress=False)
               for _ in range(epochs)]
    return history, [p.detach().clone() for net in step.nets.values() for p in net.parameters()], graphed


def test_graphed_training_equals_eager_training_without_dropout():
    """Warm-up undone, full batches replayed, the ragged batch eager: the same updates as eager."""
    data = TensorSplit(small_split(num_videos=22), CUDA)   # batches of 8: 8, 8 replayed, 6 eager
    eager_history, eager_params, _ = train_epochs(data, 2, 8, use_graph=False)
    graph_history, graph_params, graphed = train_epochs(data, 2, 8, use_graph=True)
    assert graphed.graph is not None
    for eager, graph in zip(eager_history, graph_history):
        assert eager.keys() == graph.keys()
        for name in eager:
            assert graph[name] == pytest.approx(eager[name], rel=1e-3, abs=1e-5), name
    for eager, graph in zip(eager_params, graph_params):
        torch.testing.assert_close(graph, eager, rtol=1e-3, atol=1e-5)


def test_graphed_training_with_clipping_and_pseudo_labels_equals_eager():
    """--grad_norm and the pseudo-label terms (PROTOCOL.md §13) inside the captured step: the same
    losses and weights as eager."""
    def train(use_graph):
        data = TensorSplit(small_split(num_videos=16), CUDA)
        pseudo = (torch.rand(16, 10, 25, generator=torch.Generator().manual_seed(1)) < 0.2).float()
        data.add("audio_pseudo", pseudo)
        data.add("visual_pseudo", pseudo.flip(0))
        step = cuda_training()
        step.grad_norm = 0.5
        graphed = GraphedTrainStep(step, data, 8, step.nets.values(), step.optimizers) if use_graph else None
        losses = engine.train_one_epoch(step, data, 8, torch.Generator().manual_seed(0), graphed_step=graphed,
                                        progress=False)
        return losses, [p.detach().clone() for net in step.nets.values() for p in net.parameters()]
    eager_losses, eager_params = train(use_graph=False)
    graph_losses, graph_params = train(use_graph=True)
    assert {"pseudo_audio", "pseudo_visual"} <= set(eager_losses) and eager_losses.keys() == graph_losses.keys()
    for name in eager_losses:
        assert graph_losses[name] == pytest.approx(eager_losses[name], rel=1e-3, abs=1e-5), name
    for eager, graph in zip(eager_params, graph_params):
        torch.testing.assert_close(graph, eager, rtol=1e-3, atol=1e-5)


def test_a_learning_rate_change_reaches_the_captured_graph():
    data = TensorSplit(small_split(num_videos=8), CUDA)
    step = cuda_training()
    model = step.nets["model"]
    graphed = GraphedTrainStep(step, data, 8, step.nets.values(), step.optimizers)
    index = torch.arange(8, device=CUDA)
    graphed(index)   # capture + first replay
    before = [p.detach().clone() for p in model.parameters()]
    for optimizer in step.optimizers:
        optimizer.param_groups[0]["lr"].fill_(0.0)   # what StepLR does to the tensor learning rate
    graphed(index)
    torch.cuda.synchronize()
    for old, new in zip(before, model.parameters()):
        assert torch.equal(old, new)


def test_bf16_autocast_step_on_cuda_keeps_float32_losses():
    data = TensorSplit(small_split(num_videos=8), CUDA)
    step = cuda_training(dropout=0.1, autocast_dtype=torch.bfloat16)
    losses = step(data.gather(torch.arange(8, device=CUDA)))
    assert all(value.dtype == torch.float32 and bool(torch.isfinite(value)) for value in losses.values())


def test_background_writer_copies_cuda_tensors_to_the_host(tmp_path):
    weights = torch.arange(4.0, device=CUDA)
    with checkpoint.BackgroundWriter() as writer:
        writer.save(str(tmp_path / "last.pt"), nets={"w": weights})
        weights.zero_()
    assert torch.equal(checkpoint.load(str(tmp_path / "last.pt"))["nets"]["w"], torch.arange(4.0))


@pytest.mark.parametrize("speed_flags", [[], ["--cuda_graph"], ["--autocast", "bf16"]])
def test_train_and_test_on_cuda(synthetic_root, tmp_path, speed_flags):
    common = ["--device", "cuda", *speed_flags]
    summary = run_main(train_flags(synthetic_root, tmp_path, "--mode", "train", "--epochs", "2", *common))
    assert summary["provenance"]["device"].startswith("cuda")
    assert len(summary["history"]) == 2
    result = run_main(train_flags(synthetic_root, tmp_path, "--mode", "test", "--device", "cuda"))
    assert "DHHN dual (best-audio + best-visual)" in result["tables"]


def test_feature_extraction_on_cuda_matches_the_cpu(tmp_path):
    """scripts/extract_features.py's networks on the GPU (random weights, the same seed): the same
    features as on the CPU, up to the rounding of cuDNN's convolutions (TF32 by default on Ampere+)."""
    import numpy as np

    from extraction.extractor import OFFICIAL_KINDS as KINDS
    from extraction.extractor import FeatureExtractor, extract_videos, feature_folder
    from video_fixtures import write_test_video
    video = write_test_video(tmp_path / "clip.mp4", 3)["path"]
    features = {}
    for device in ("cpu", "cuda"):
        root = str(tmp_path / device)
        extract_videos(FeatureExtractor(device=device, random_weights=True), [video], root, progress=False)
        features[device] = {kind: np.load(f"{feature_folder(root, kind)}/clip.npy") for kind in KINDS}
    for kind in KINDS:
        scale = np.abs(features["cpu"][kind]).max()
        np.testing.assert_allclose(features["cuda"][kind], features["cpu"][kind], atol=1e-2 * scale, rtol=1e-2)
