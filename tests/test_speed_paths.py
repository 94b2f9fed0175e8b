"""The speed options on CPU: the --cuda_graph and --autocast plumbing, the warm-up undo of the CUDA
graph path, and the published-style baseline of scripts/benchmark.py (its truth and scores must be
the project's). The CUDA graph capture itself needs a GPU and is not exercised here."""
import copy
import os
import time
import types

import numpy as np
import pandas as pd
import pytest
import torch

import engine
from avvp_data.tensor_split import TensorSplit
from conftest import run_main
from dataloader import LLPPaths, load_split
from engine.cuda_graph import CudaGraphError, GraphedTrainStep, check_device, make_capturable, preserved_training_state
from nets import HCMN, AudioMGN, VisualMGN, build_hcmn
from recipes.dhhn import DHHNCriterion, DHHNTrainingModule
from scripts import benchmark
from utils.eval_metrics import evaluate_split, segment_predictions

SMALL_DIMS = {"audio": 16, "frames": 24, "snippets": 20}
SMALL_WIDTH = 32


def small_split(num_videos=10, seed=0):
    rng = np.random.default_rng(seed)
    return types.SimpleNamespace(
        name="small", filenames=[f"video{i}" for i in range(num_videos)],
        audio=rng.standard_normal((num_videos, 10, SMALL_DIMS["audio"]), dtype=np.float32),
        frames=rng.standard_normal((num_videos, 80, SMALL_DIMS["frames"]), dtype=np.float32),
        snippets=rng.standard_normal((num_videos, 10, SMALL_DIMS["snippets"]), dtype=np.float32),
        labels=(rng.random((num_videos, 25)) < 0.2).astype(np.float32))


def small_training(seed=0, device="cpu", dropout=0.1, fused=None, autocast_dtype=None):
    """The DHHN training step (engine.TrainStep, DHHN criterion) of HCMN and both MGNs at width 32 (the
    wiring of PROTOCOL.md §5-6, cheap enough for CPU tests) on `device`, with Adam (pass fused=True for
    the optimizer modes.train.build_training_run makes on modes.train.FUSED_ADAM_DEVICES)."""
    torch.manual_seed(seed)
    model = HCMN(SMALL_DIMS["audio"], SMALL_DIMS["frames"], SMALL_DIMS["snippets"], d_model=SMALL_WIDTH,
                 dropout=dropout)
    audio_mgn = AudioMGN(SMALL_DIMS["audio"], d_model=SMALL_WIDTH, dim_feedforward=SMALL_WIDTH, dropout=dropout)
    visual_mgn = VisualMGN(SMALL_DIMS["frames"], SMALL_DIMS["snippets"], d_model=SMALL_WIDTH,
                           dim_feedforward=SMALL_WIDTH, dropout=dropout)
    module = DHHNTrainingModule(model, {"audio_mgn": audio_mgn, "visual_mgn": visual_mgn}).to(device)
    optimizers = [torch.optim.Adam(net.parameters(), lr=1e-3, fused=fused) for net in module.nets.values()]
    return engine.TrainStep(module, DHHNCriterion(use_rmse=True), optimizers, autocast_dtype)


def state_of(nets, optimizers):
    """Every parameter, buffer and optimizer-state tensor, cloned, in a fixed order."""
    tensors = [t.detach().clone() for net in nets for t in list(net.parameters()) + list(net.buffers())]
    for optimizer in optimizers:
        for state in optimizer.state.values():
            tensors += [value.clone() for value in state.values() if torch.is_tensor(value)]
    return tensors


def assert_same(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- --cuda_graph needs CUDA

def test_cuda_graph_flag_on_cpu_is_a_clear_usage_error(tmp_path, capsys):
    # checked before any input is read: the data flags here point nowhere
    with pytest.raises(SystemExit) as exit_info:
        run_main(["--mode", "train", "--device", "cpu", "--cuda_graph", "--model_save_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--cuda_graph" in err and "CUDA" in err and "Traceback" not in err


def test_graphed_step_refuses_a_cpu_split():
    data = TensorSplit(small_split(), torch.device("cpu"))
    step = small_training()
    with pytest.raises(CudaGraphError, match="CUDA"):
        GraphedTrainStep(lambda batch: {}, data, 4, step.nets.values(), step.optimizers)
    with pytest.raises(CudaGraphError):
        check_device("cpu")


# ---------------------------------------------------------------- the engine's routing of batches

class EagerStandIn:
    """CPU stand-in for GraphedTrainStep: takes full batches and runs the same step eagerly."""

    def __init__(self, step, data, batch_size):
        self.step, self.data, self.batch_size, self.sizes = step, data, batch_size, []

    def accepts(self, index):
        return index.numel() == self.batch_size

    def __call__(self, index):
        self.sizes.append(index.numel())
        return self.step(self.data.gather(index))


def test_full_batches_go_to_the_graphed_step_and_the_ragged_one_runs_eagerly():
    data = TensorSplit(small_split(num_videos=10), torch.device("cpu"))

    def run(with_stand_in):
        step = small_training()
        stand_in = EagerStandIn(step, data, batch_size=4) if with_stand_in else None
        torch.manual_seed(1)
        losses = engine.train_one_epoch(step, data, 4, torch.Generator().manual_seed(0), graphed_step=stand_in,
                                        progress=False)
        return losses, state_of(step.nets.values(), step.optimizers), stand_in

    plain_losses, plain_state, _ = run(False)
    routed_losses, routed_state, stand_in = run(True)
    assert stand_in.sizes == [4, 4]          # 10 videos: two full batches, the last 2 run eagerly
    assert routed_losses == plain_losses
    assert_same(routed_state, plain_state)


def test_bf16_autocast_step_keeps_float32_losses_and_weights():
    data = TensorSplit(small_split(num_videos=4), torch.device("cpu"))
    step = small_training(autocast_dtype=torch.bfloat16)
    model = step.nets["model"]
    before = [p.detach().clone() for p in model.parameters()]
    losses = step(data.gather(torch.arange(4)))
    assert all(value.dtype == torch.float32 and torch.isfinite(value) for value in losses.values())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_autocast_flag_is_parsed_and_defaults_off():
    from main_DHHN import get_args_parser
    parser = get_args_parser()
    defaults = parser.parse_args([])
    assert defaults.autocast == "none" and defaults.cuda_graph is False
    assert parser.parse_args(["--autocast", "bf16"]).autocast == "bf16"
    with pytest.raises(SystemExit):
        parser.parse_args(["--autocast", "fp8"])


# ---------------------------------------------------------------- what the graph path relies on

@pytest.mark.parametrize("with_existing_state", [False, True])
def test_warm_up_steps_leave_no_trace(with_existing_state):
    """Steps inside preserved_training_state are undone: the next step equals that of an untouched copy."""
    data = TensorSplit(small_split(num_videos=8), torch.device("cpu"))
    batch = data.gather(torch.arange(8))
    step = small_training()
    nets, optimizers = list(step.nets.values()), step.optimizers
    if with_existing_state:   # as after --resume: Adam moments and step counts already exist
        step(batch)
    reference = copy.deepcopy(step)   # nets and optimizers copied together: the copies stay wired
    before = state_of(nets, optimizers)
    with preserved_training_state(nets, optimizers):
        for _ in range(2):
            step(batch)
    after = state_of(nets, optimizers)
    if with_existing_state:
        assert_same(after, before)
    else:   # fresh Adam state created by the warm-up is reset to zeros (step 0, zero moments)
        assert_same(after[:len(before)], before)
        assert all(not tensor.any() for tensor in after[len(before):])
    for twin in (step, reference):
        twin.train()
    torch.manual_seed(3)
    step(batch)
    torch.manual_seed(3)
    reference(batch)
    assert_same(state_of(nets, optimizers), state_of(reference.nets.values(), reference.optimizers))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_capturable_learning_rate_is_a_tensor_that_the_scheduler_updates_in_place():
    """A captured graph reads the learning rate from one tensor; StepLR must change that tensor."""
    parameter = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.Adam([parameter], lr=3e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.1)
    make_capturable(optimizer, "cpu")
    group = optimizer.param_groups[0]
    lr_tensor = group["lr"]
    assert group["capturable"] is True and torch.is_tensor(lr_tensor) and lr_tensor.dtype == torch.float32
    assert float(lr_tensor) == pytest.approx(3e-4)
    for _ in range(2):
        scheduler.step()
    assert group["lr"] is lr_tensor and float(lr_tensor) == pytest.approx(3e-5)


# ---------------------------------------------------------------- the benchmark's published-style baseline

def test_published_style_truth_and_scores_match_the_project(synthetic_root):
    """The baseline of scripts/benchmark.py computes what the project computes, only slower."""
    paths = LLPPaths.official(synthetic_root)
    split = load_split(paths, "val")
    eval_audio = pd.read_csv(paths.eval_audio_csv, header=0, sep="\t")
    truth = np.stack([benchmark.published_style_truth(eval_audio, name) for name in split.filenames])
    assert np.array_equal(truth, split.gt_audio)

    torch.manual_seed(0)
    model = build_hcmn(split.feature_dims()).eval()
    data = TensorSplit(split, torch.device("cpu"))
    outputs = engine.predict(model, data, progress=False)
    video_scores = []
    for i in range(len(split.filenames)):
        one = {key: value[i:i + 1] for key, value in outputs.items()}
        video_scores.append(benchmark.published_style_video_scores(one, split.gt_audio[i], split.gt_visual[i]))
    published = benchmark.scores_as_metrics(video_scores)
    project = evaluate_split(*segment_predictions(outputs), split.gt_audio, split.gt_visual)
    assert benchmark.max_metric_difference(published, project) < 1e-12


# ---- checkpoints written off the training thread (utils.checkpoint.BackgroundWriter) ----

def test_background_writer_snapshots_at_save_and_keeps_submission_order(tmp_path, monkeypatch):
    from utils import checkpoint
    order = []
    real_save = checkpoint.save

    def slow_save(path, **content):
        time.sleep(0.05)
        real_save(path, **content)
        order.append(os.path.basename(path))
    monkeypatch.setattr(checkpoint, "save", slow_save)
    weights = torch.zeros(3)
    with checkpoint.BackgroundWriter(max_pending=2) as writer:
        for epoch in range(1, 5):
            weights.fill_(epoch)   # training goes on changing the tensors while writes are queued
            writer.save(str(tmp_path / f"epoch{epoch}.pt"), nets={"w": weights}, history=[{"epoch": epoch}])
            assert len(writer._pending) <= 2
    assert order == ["epoch1.pt", "epoch2.pt", "epoch3.pt", "epoch4.pt"]
    for epoch in range(1, 5):
        content = checkpoint.load(str(tmp_path / f"epoch{epoch}.pt"))
        assert torch.equal(content["nets"]["w"], torch.full((3,), float(epoch)))
        assert content["history"] == [{"epoch": epoch}]


def test_background_writer_finishes_queued_writes_when_training_is_interrupted(tmp_path, monkeypatch):
    from utils import checkpoint
    real_save = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda path, **content: (time.sleep(0.2), real_save(path, **content)))
    with pytest.raises(KeyboardInterrupt):
        with checkpoint.BackgroundWriter() as writer:
            writer.save(str(tmp_path / "last.pt"), epoch=3)
            raise KeyboardInterrupt
    assert checkpoint.load(str(tmp_path / "last.pt"))["epoch"] == 3


def test_background_writer_reports_a_failed_write(tmp_path):
    from utils import checkpoint
    (tmp_path / "not_a_folder").write_text("a file")
    writer = checkpoint.BackgroundWriter()
    writer.save(str(tmp_path / "not_a_folder" / "last.pt"), epoch=1)
    with pytest.raises(OSError):
        writer.close()
