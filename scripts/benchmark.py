"""Speed of the project's training and evaluation against a loop of the kind the published code uses.

    python scripts/benchmark.py                       # CPU-sized default, a few minutes on 2 cores
    python scripts/benchmark.py --llp --device cuda   # LLP sizes: 10,000 train / 649 val / 1,200 test

Writes a synthetic LLP in the official layout (avvp_data/synthetic_llp.py; per-video .npy files and
the annotation CSVs) and measures, in one run on one device (its name is printed):
  (a) training epochs, the same nets, losses (engine.TrainStep) and batch size everywhere:
      published-style  torch DataLoader over a Dataset that np.load's the three .npy files of every
                       video at every step (80 frames, projected then averaged in the model), plain Adam;
      plain loop       preloaded host tensors (frames pooled per segment, as the project) indexed per
                       step and copied to the device, plain Adam;
      project          TensorSplit (device-resident) + engine.train_one_epoch, the optimizers of
                       modes.train.build_training_run (fused Adam);
      project --cuda_graph (CUDA only), project --autocast bf16 (with --bf16);
  (b) validation: engine.evaluate (batched forward + batched metrics) against batch size 1, a pandas
      filter of the eval CSV rows per video for its 25x10 truth, and per-video segment_level /
      event_level, as the release evaluates, with the release's forward pass (nets/release_reference.py:
      80 frames projected, each HAN direction and each scale's head a call of its own); and the same
      batch-1 loop over the project's HCMN (what the loop alone costs);
  (c) loading the split: dataloader.load_split reading every file, building the packed cache, and
      hitting it;
  (d) memory of the frame features in float32 and float16, and the metric change when the model is
      evaluated on float16 frames.
Training methods run their epochs round-robin (epoch 1 of every method, then epoch 2, ... in
alternating order), so that load from other processes on a shared machine hits all of them alike;
ratios use the median epoch (the fastest with fewer than 3 epochs). Every method starts from the same
weights and sees the same batches and dropout seeds, so their float32 results differ only by rounding.
"""
import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import engine
from avvp_data.feature_cache import PackedFeatureCache, default_cache_dir
from avvp_data.feature_files import feature_file_name, pool_frames_per_segment
from avvp_data.llp import CLASS_INDEX, NUM_CLASSES, NUM_SEGMENTS
from avvp_data.synthetic_llp import generate_synthetic_llp
from avvp_data.tensor_split import FEATURE_KEYS, TensorSplit
from config import resolve_config
from dataloader import LLPPaths, load_split
from engine.cuda_graph import GraphedTrainStep
from main_DHHN import get_args_parser as main_args_parser
from modes.train import FUSED_ADAM_DEVICES, build_training_run
from nets import build_hcmn, build_mgns
from nets.convert import hcmn_to_release
from nets.release_reference import release_hcmn_forward
from recipes import RECIPES
from recipes.dhhn import DHHNCriterion, DHHNTrainingModule
from utils.errors import UsageError, UserError
from utils.eval_metrics import METRIC_KEYS, event_level, score_outputs, segment_level
from utils.runtime import device_description, resolve_device

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LLP_SIZES = {"n_train": 10000, "n_val": 649, "n_test": 1200}
# a few test videos even where only --time_origin uses them: val loading reads the test label file
# to know every video the eval files may name (dataloader.load_split), and an empty one is refused
CPU_SIZES = {"n_train": 512, "n_val": 256, "n_test": 16}
LLP_TOTAL_VIDEOS = 11849
RELEASE_TRAIN_WORKERS = 12   # the release's training DataLoader
GB = 1e9


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--llp", action="store_true", help="LLP split sizes (10,000 / 649 / 1,200); for a GPU")
    parser.add_argument("--n_train", type=int, default=None, help=f"train videos (default {CPU_SIZES['n_train']})")
    parser.add_argument("--n_val", type=int, default=None, help=f"val videos (default {CPU_SIZES['n_val']})")
    parser.add_argument("--n_test", type=int, default=None,
                        help="test videos, timed only by --time_origin (default 16; --llp 1,200)")
    parser.add_argument("--epochs", type=int, default=3, help="timed training epochs per method")
    parser.add_argument("--batch_size", type=int, default=64, help="training batch size (DHHN: 64)")
    parser.add_argument("--eval_repeats", type=int, default=3, help="timed repeats of the project's evaluation")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"DataLoader workers of the published-style training loop (default: "
                             f"{RELEASE_TRAIN_WORKERS} on CUDA as the release, 0 on CPU); its val loop uses 1 or 0")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--root", default=None,
                        help="folder of the synthetic LLP, kept and reused by later runs (default: a temporary "
                             "folder, removed at the end)")
    parser.add_argument("--bf16", action="store_true", help="also train with --autocast bf16 and report its metrics")
    parser.add_argument("--no_cuda_graph", action="store_true", help="on CUDA, skip the --cuda_graph training path")
    parser.add_argument("--skip_published", action="store_true",
                        help="skip the published-style training loop (the slowest part)")
    parser.add_argument("--time_origin", action="store_true",
                        help="also time `sh DHHN_origin.sh` (train + test) end to end on the synthetic LLP; "
                             "needs --n_test > 0")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the initial weights and the shuffling")
    return parser


def resolve_sizes(args):
    defaults = LLP_SIZES if args.llp else CPU_SIZES
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    problems = [f"--{key} {getattr(args, key)}: must be at least 1"
                + (" (loading val reads the test label file too)" if key == "n_test" else "")
                for key in ("n_train", "n_val", "n_test", "epochs", "batch_size", "eval_repeats")
                if getattr(args, key) < 1]
    if problems:
        raise UsageError("; ".join(problems))
    return args


# ---------------------------------------------------------------- timing

def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device):
    """(result, seconds) of function(), the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return result, time.perf_counter() - start


# ---------------------------------------------------------------- the published-style baseline

class PublishedStyleDataset(torch.utils.data.Dataset):
    """A split read the way the release's dataset class does: the label row is parsed and the three
    .npy files of the video are loaded at every access."""

    def __init__(self, label_csv, audio_dir, video_dir, st_dir):
        self.table = pd.read_csv(label_csv, header=0, sep="\t")
        self.folders = {"audio": audio_dir, "frames": video_dir, "snippets": st_dir}

    def __len__(self):
        return len(self.table)

    def __getitem__(self, index):
        row = self.table.loc[index, :]
        label = np.zeros(NUM_CLASSES, dtype=np.float32)
        for name in row["event_labels"].split(","):
            label[CLASS_INDEX[name]] = 1.0
        name = feature_file_name(row["filename"])
        sample = {key: torch.from_numpy(np.load(os.path.join(folder, name)).astype(np.float32))
                  for key, folder in self.folders.items()}
        sample["labels"] = torch.from_numpy(label)
        return sample


class EpochPermutation(torch.utils.data.Sampler):
    """One torch.randperm per epoch from `generator`: the batch order of TensorSplit.batch_indices
    (RandomSampler would draw a second permutation per epoch and so drift from the other loops)."""

    def __init__(self, size, generator):
        self.size, self.generator = size, generator

    def __len__(self):
        return self.size

    def __iter__(self):
        return iter(torch.randperm(self.size, generator=self.generator).tolist())


def published_style_truth(eval_table, filename):
    """(25, 10) truth of one video from a pandas filter of the eval rows, as the release builds it."""
    truth = np.zeros((NUM_CLASSES, NUM_SEGMENTS))
    rows = eval_table.loc[eval_table["filename"] == filename]
    for onset, offset, name in zip(rows["onset"], rows["offset"], rows["event_labels"]):
        truth[CLASS_INDEX[name], int(onset):int(offset)] = 1
    return truth


def published_style_video_scores(outputs, gt_audio, gt_visual):
    """Segment- and event-level scores of one video from batch-size-1 model outputs, as the release
    computes them: 8 numbers (seg then evt; audio, visual, Event@AV, audio-visual)."""
    audio_gate = (outputs["audio_prob"].cpu().numpy() >= 0.5).astype(np.int_)     # (1, 25)
    visual_gate = (outputs["visual_prob"].cpu().numpy() >= 0.5).astype(np.int_)
    frame_prob = outputs["frame_prob"][0].cpu().numpy()                             # (10, 2, 25)
    pred_audio = (frame_prob[:, 0, :] >= 0.5).astype(np.int_) * np.repeat(audio_gate, NUM_SEGMENTS, axis=0)
    pred_visual = (frame_prob[:, 1, :] >= 0.5).astype(np.int_) * np.repeat(visual_gate, NUM_SEGMENTS, axis=0)
    so_a, so_v = pred_audio.T, pred_visual.T
    so_av, gt_av = so_a * so_v, gt_audio * gt_visual
    return (segment_level(so_a, so_v, so_av, gt_audio, gt_visual, gt_av)
            + event_level(so_a, so_v, so_av, gt_audio, gt_visual, gt_av))


def scores_as_metrics(video_scores):
    """Per-video 8-tuples -> the headline metric dict ("seg_audio", ..., "evt_event")."""
    means = np.asarray(video_scores).mean(axis=0)
    metrics = {}
    for level, (audio, visual, event, audio_visual) in (("seg", means[:4]), ("evt", means[4:])):
        metrics.update({f"{level}_audio": audio, f"{level}_visual": visual, f"{level}_av": audio_visual,
                        f"{level}_event": event, f"{level}_type": (audio + visual + audio_visual) / 3})
    return metrics


@torch.no_grad()
def published_style_evaluate(forward, loader, label_csv, eval_audio_csv, eval_visual_csv, device):
    """Batch-size-1 evaluation with per-video pandas filtering and per-video metrics.
    forward: (audio, frames, snippets) -> outputs of an HCMN in eval mode."""
    table = pd.read_csv(label_csv, header=0, sep="\t")
    eval_audio = pd.read_csv(eval_audio_csv, header=0, sep="\t")
    eval_visual = pd.read_csv(eval_visual_csv, header=0, sep="\t")
    video_scores = []
    for index, sample in enumerate(loader):
        outputs = forward(sample["audio"].to(device), sample["frames"].to(device), sample["snippets"].to(device))
        filename = table.loc[index, "filename"]
        video_scores.append(published_style_video_scores(
            outputs, published_style_truth(eval_audio, filename), published_style_truth(eval_visual, filename)))
    return scores_as_metrics(video_scores)


def dhhn_step(model, audio_mgn, visual_mgn, optimizers, autocast_dtype=None):
    """The project's DHHN training step (engine.TrainStep with the DHHN criterion) on these nets."""
    module = DHHNTrainingModule(model, {"audio_mgn": audio_mgn, "visual_mgn": visual_mgn})
    return engine.TrainStep(module, DHHNCriterion(), optimizers, autocast_dtype)


def published_style_epoch(step, loader, device):
    step.train()
    non_blocking = device.type == "cuda"
    for sample in loader:
        step({key: value.to(device, non_blocking=non_blocking) for key, value in sample.items()})


# ---------------------------------------------------------------- the plain loop over preloaded tensors

def preloaded_host_tensors(split):
    """Features (frames pooled per segment, as the project) and labels as CPU tensors."""
    host = {key: torch.from_numpy(getattr(split, key)) for key in FEATURE_KEYS}
    host["frames"] = torch.from_numpy(pool_frames_per_segment(split.frames, split.snippets.shape[1]))
    host["labels"] = torch.from_numpy(split.labels)
    return host


def plain_epoch(step, host, batch_size, generator, device):
    step.train()
    order = torch.randperm(len(host["labels"]), generator=generator)
    for index in order.split(batch_size):
        step({key: value[index].to(device) for key, value in host.items()})


# ---------------------------------------------------------------- nets

def plain_nets(feature_dims, device, seed):
    """HCMN + MGNs with the seed's initial weights and plain (unfused) Adam at the published rates."""
    rates = resolve_config(main_args_parser().parse_args([])).flags()
    torch.manual_seed(seed)
    model = build_hcmn(feature_dims).to(device)
    audio_mgn, visual_mgn = (net.to(device) for net in build_mgns(feature_dims))
    optimizers = [torch.optim.Adam(net.parameters(), lr=lr) for net, lr in
                  ((model, rates["lr"]), (audio_mgn, rates["lr_audio_mgn"]), (visual_mgn, rates["lr_visual_mgn"]))]
    return model, audio_mgn, visual_mgn, optimizers


def project_nets(feature_dims, device, seed):
    """The nets and optimizers of `--mode train` (modes.train.build_training_run), seed's initial weights."""
    config = resolve_config(main_args_parser().parse_args(["--device", str(device)]))
    torch.manual_seed(seed)
    run = build_training_run(RECIPES["dhhn"], config, feature_dims, device)
    return run.nets["model"], run.nets["audio_mgn"], run.nets["visual_mgn"], list(run.optimizers.values())


# ---------------------------------------------------------------- operator counts

class OperatorCounter(TorchDispatchMode):
    """Counts the operators that reach the device (views and allocations excluded); on a GPU each
    is about one kernel launch, which bounds a launch-bound step when it is not a CUDA graph."""

    FREE = {"aten.detach", "aten.empty", "aten.empty_strided", "aten.empty_like", "aten._unsafe_view",
            "aten._local_scalar_dense"}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and str(func.overloadpacket) not in self.FREE:
            self.count += 1
        return func(*args, **(kwargs or {}))


def operators_per_step(feature_dims, device, data, batch_size, seed):
    """Operator counts on one batch: (forward + backward of the HCMN and both MGNs, the three Adam
    steps, one evaluation forward pass of the HCMN)."""
    model, audio_mgn, visual_mgn, optimizers = project_nets(feature_dims, device, seed)
    batch = data.gather(torch.arange(batch_size, device=device))
    dhhn_step(model, audio_mgn, visual_mgn, optimizers)(batch)   # optimizer state exists
    for net in (model, audio_mgn, visual_mgn):
        net.zero_grad(set_to_none=True)   # as the step does, so nothing accumulates below
    with OperatorCounter() as forward_backward:
        dhhn_step(model, audio_mgn, visual_mgn, [])(batch)   # no optimizer: no step
    with OperatorCounter() as whole_step:
        dhhn_step(model, audio_mgn, visual_mgn, optimizers)(batch)
    model.eval()
    with torch.no_grad(), OperatorCounter() as evaluation:
        model(batch["audio"], batch["frames"], batch["snippets"])
    return forward_backward.count, whole_step.count - forward_backward.count, evaluation.count


# ---------------------------------------------------------------- report helpers

def metric_line(metrics):
    return " ".join(f"{100 * float(metrics[key]):5.1f}" for key in METRIC_KEYS)


def max_metric_difference(first, second):
    return max(abs(float(first[key]) - float(second[key])) for key in METRIC_KEYS)


def nbytes(array_or_tensor):
    if torch.is_tensor(array_or_tensor):
        return array_or_tensor.numel() * array_or_tensor.element_size()
    return array_or_tensor.nbytes


def load(paths, name, cache_dir, frame_dtype="float32", pool_frames=False):
    cache = PackedFeatureCache(cache_dir) if cache_dir is not None else None
    return load_split(paths, name, cache=cache, frame_dtype=frame_dtype, pool_frames=pool_frames)


# ---------------------------------------------------------------- the benchmark

def measure_loading(paths, work_dir, device):
    """(c): seconds to load train + val three ways; returns (times, train split, val split)."""
    cache_dir = os.path.join(work_dir, "packed_cache")
    shutil.rmtree(cache_dir, ignore_errors=True)
    times = {}
    for label, cache in (("files, no cache", None), ("files -> packed cache (first run)", cache_dir),
                         ("packed cache (later runs)", cache_dir)):
        (train, val), seconds = timed(lambda cache=cache: (load(paths, "train", cache), load(paths, "val", cache)),
                                      device)
        times[label] = seconds
    return times, train, val, cache_dir


def train_methods(args, device, feature_dims, paths, train_split):
    """name -> method dict with the nets and a run_epoch() closure, in run order."""
    methods = {}
    seed = args.seed
    if not args.skip_published:
        model, audio_mgn, visual_mgn, optimizers = plain_nets(feature_dims, device, seed)
        dataset = PublishedStyleDataset(paths.label_train, paths.audio_dir, paths.video_dir,
                                        paths.st_dir)
        # shuffled as the release (a new permutation per epoch), in the same order as the other loops;
        # the loader's own generator keeps its worker seeding off the global random stream
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=args.batch_size,
            sampler=EpochPermutation(len(dataset), torch.Generator().manual_seed(seed)),
            num_workers=args.workers, pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed),
            persistent_workers=args.workers > 0)
        methods["published-style (np.load per video, DataLoader)"] = dict(
            model=model, run=functools.partial(published_style_epoch,
                                               dhhn_step(model, audio_mgn, visual_mgn, optimizers), loader, device))
    model, audio_mgn, visual_mgn, optimizers = plain_nets(feature_dims, device, seed)
    host = preloaded_host_tensors(train_split)
    methods["plain loop (preloaded host tensors)"] = dict(
        model=model, run=functools.partial(plain_epoch, dhhn_step(model, audio_mgn, visual_mgn, optimizers), host,
                                           args.batch_size, torch.Generator().manual_seed(seed), device))
    data = TensorSplit(train_split, device)
    variants = [("project", None, False)]
    if device.type == "cuda" and not args.no_cuda_graph:
        variants.append(("project --cuda_graph", None, True))
    if args.bf16:
        variants.append(("project --autocast bf16", torch.bfloat16, False))
    for name, autocast_dtype, use_graph in variants:
        model, audio_mgn, visual_mgn, optimizers = project_nets(feature_dims, device, seed)
        step = dhhn_step(model, audio_mgn, visual_mgn, optimizers, autocast_dtype)
        graphed_step = (GraphedTrainStep(step, data, args.batch_size, step.nets.values(), optimizers)
                        if use_graph else None)
        methods[name] = dict(model=model, data=data, run=functools.partial(
            engine.train_one_epoch, step, data, args.batch_size, torch.Generator().manual_seed(seed),
            graphed_step=graphed_step, progress=False))
    return methods


def main(args):
    resolve_sizes(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.workers is None:
        args.workers = RELEASE_TRAIN_WORKERS if device.type == "cuda" else 0
    print(f"device: {device_description(device)} | torch {torch.__version__} | {os.cpu_count()} CPU cores, "
          f"{torch.get_num_threads()} torch threads")
    print(f"sizes: {args.n_train} train / {args.n_val} val / {args.n_test} test videos, batch {args.batch_size}, "
          f"{args.epochs} timed epochs per method, published-style loop with {args.workers} workers")
    work_dir = tempfile.mkdtemp(prefix="dhhn_benchmark_")
    root = args.root or os.path.join(work_dir, "llp")
    try:
        _, seconds = timed(lambda: generate_synthetic_llp(root, args.n_train, args.n_val, args.n_test,
                                                          seed=args.seed), torch.device("cpu"))
        print(f"synthetic LLP in {root}: {seconds:.1f} s (not part of any measurement)")
        paths = LLPPaths.official(root)
        run_benchmark(args, device, paths, work_dir, root)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def run_benchmark(args, device, paths, work_dir, root):
    report = []

    # (c) loading
    load_times, train_split, val_split, _ = measure_loading(paths, work_dir, device)
    print("\n(c) loading train + val (the OS page cache is warm: the files were just written or read)")
    for label, seconds in load_times.items():
        print(f"  {label:<40} {seconds:8.2f} s")
    load_ratio = load_times["files, no cache"] / load_times["packed cache (later runs)"]
    report.append(f"load train+val: files {load_times['files, no cache']:.2f} s, packed cache "
                  f"{load_times['packed cache (later runs)']:.2f} s ({load_ratio:.1f}x)")

    # (a) training
    feature_dims = train_split.feature_dims()
    methods = train_methods(args, device, feature_dims, paths, train_split)
    print(f"\n(a) training epochs ({len(train_split.filenames)} videos, batch {args.batch_size}, HCMN + both MGNs)")
    epoch_times = {name: [] for name in methods}
    for epoch in range(args.epochs):
        names = list(methods) if epoch % 2 == 0 else list(reversed(methods))   # no method always runs last
        for name in names:
            method = methods[name]
            # every method draws the same dropout masks (same seed, same op order)
            torch.manual_seed(args.seed + 1 + epoch)
            _, seconds = timed(method["run"], device)
            epoch_times[name].append(seconds)
            print(f"  epoch {epoch + 1} {name:<50} {seconds:8.2f} s", flush=True)
    # the median ignores one outlier epoch (start-up, graph capture, a burst of load from elsewhere)
    typical = {name: float(np.median(times)) if len(times) >= 3 else min(times)
               for name, times in epoch_times.items()}
    statistic = "median" if args.epochs >= 3 else "best"
    print(f"  per method: best epoch, {statistic} epoch, {statistic} relative to the project's")
    for name, seconds in typical.items():
        print(f"    {name:<52} {min(epoch_times[name]):8.3f} s {seconds:8.3f} s   {seconds / typical['project']:5.2f}x")
    line = (f"train epoch ({statistic}): project {typical['project']:.3f} s; plain loop "
            f"{typical['plain loop (preloaded host tensors)']:.3f} s "
            f"({typical['plain loop (preloaded host tensors)'] / typical['project']:.2f}x)")
    for name, short in (("published-style (np.load per video, DataLoader)", "published-style"),
                        ("project --cuda_graph", "--cuda_graph"), ("project --autocast bf16", "--autocast bf16")):
        if name in typical:
            line += f"; {short} {typical[name]:.3f} s ({typical[name] / typical['project']:.2f}x)"
    report.append(line)

    model_ops, adam_ops, eval_ops = operators_per_step(feature_dims, device, methods["project"]["data"],
                                                       args.batch_size, args.seed)
    adam_kind = "fused" if device.type in FUSED_ADAM_DEVICES else "per parameter"
    print(f"  operators per training step: forward + backward of HCMN and MGNs {model_ops:,}, three Adam "
          f"steps ({adam_kind}) {adam_ops:,}; per evaluation forward pass {eval_ops:,}")
    report.append(f"operators per training step: model {model_ops:,} + Adam {adam_ops:,} ({adam_kind}); "
                  "each about one kernel launch on a GPU without --cuda_graph")

    # (b) evaluation of the project-trained model
    val_data = TensorSplit(val_split, device)
    model = methods["project"]["model"]
    gt_audio, gt_visual = val_split.gt_audio, val_split.gt_visual
    metrics, first_seconds = timed(lambda: engine.evaluate(model, val_data, gt_audio, gt_visual, progress=False),
                                   device)
    eval_times = [timed(lambda: engine.evaluate(model, val_data, gt_audio, gt_visual, progress=False), device)[1]
                  for _ in range(args.eval_repeats)]
    outputs, predict_seconds = timed(lambda: engine.predict(model, val_data, progress=False), device)
    _, score_seconds = timed(lambda: score_outputs(outputs, gt_audio, gt_visual), device)
    val_loader = torch.utils.data.DataLoader(
        PublishedStyleDataset(paths.label_val, paths.audio_dir, paths.video_dir, paths.st_dir),
        batch_size=1, shuffle=False, num_workers=min(args.workers, 1), pin_memory=device.type == "cuda")
    model.eval()
    # the published loop runs the release's model: every HAN direction and every scale's head a call
    # of its own; the same loop over the project's HCMN isolates what the loop alone costs
    loops = {"published-style (release forward, batch 1, pandas)":
             functools.partial(release_hcmn_forward, hcmn_to_release(model.state_dict())),
             "same loop over the project's HCMN": model}
    loop_results = {}
    for name, forward in loops.items():
        def evaluate_once(forward=forward):
            return published_style_evaluate(forward, val_loader, paths.label_val, paths.eval_audio_csv,
                                            paths.eval_visual_csv, device)
        runs = [timed(evaluate_once, device) for _ in range(2)]
        loop_results[name] = min(runs, key=lambda run: run[1])
    eval_best = min(eval_times)
    print(f"\n(b) validation of the project-trained model ({len(val_split.filenames)} videos)")
    print(f"  project engine.evaluate, first call                      {first_seconds:8.3f} s")
    print(f"  project engine.evaluate, best of {args.eval_repeats}                      {eval_best:8.3f} s"
          f"   (forward {predict_seconds:.3f} s + metrics {score_seconds:.3f} s)")
    for name, (_, seconds) in loop_results.items():
        print(f"  {name:<52} {seconds:8.3f} s   {seconds / eval_best:.1f}x the project's (best of 2)")
    print("  metrics x100, Seg. then Eve.: Audio Visual AV Type@AV Event@AV")
    print(f"    {'project':<52} {metric_line(metrics)}")
    for name, (loop_metrics, _) in loop_results.items():
        difference = 100 * max_metric_difference(metrics, loop_metrics)
        print(f"    {name:<52} {metric_line(loop_metrics)}   max diff {difference:.2f}")
    print("    (the batch-1 loops project all 80 frames; the project pools them first: equal up to float "
          "rounding at the 0.5 thresholds)")
    (_, published_seconds), (_, same_loop_seconds) = loop_results.values()
    report.append(f"val ({len(val_split.filenames)} videos): project {eval_best:.3f} s, published-style "
                  f"{published_seconds:.2f} s ({published_seconds / eval_best:.1f}x); the same batch-1 loop over "
                  f"the project's HCMN {same_loop_seconds:.2f} s ({same_loop_seconds / eval_best:.1f}x)")

    print("\n  val metrics x100 of every trained model (same initial weights, batch order and dropout seeds: "
          "float32 methods differ only by float rounding)")
    for name, method in methods.items():
        method_metrics = engine.evaluate(method["model"], val_data, gt_audio, gt_visual, progress=False)
        print(f"    {name:<50} {metric_line(method_metrics)}   max diff to project "
              f"{100 * max_metric_difference(method_metrics, metrics):.2f}")

    # (d) memory and float16 frames
    val16 = load(paths, "val", os.path.join(work_dir, "packed_cache"), frame_dtype="float16")
    val16_data = TensorSplit(val16, device)
    metrics16 = engine.evaluate(model, val16_data, gt_audio, gt_visual, progress=False)
    frames32 = nbytes(train_split.frames) + nbytes(val_split.frames)
    per_video32 = frames32 / (len(train_split.filenames) + len(val_split.filenames))
    per_video16 = nbytes(val16.frames) / len(val16.filenames)
    pooled = nbytes(val_data.tensors["frames"]) / len(val16.filenames)
    unpooled = TensorSplit(val_split, torch.device("cpu"), pool_frames=False)
    print(f"\n(d) frame features in memory (per video, and for all {LLP_TOTAL_VIDEOS:,} LLP videos)")
    per_video_unpooled = nbytes(unpooled.tensors["frames"]) / len(val16.filenames)
    for label, per_video in (("host, float32 (80 x 2048)", per_video32),
                             ("host, float16 (--frame_dtype float16)", per_video16),
                             ("device, pooled per segment (default)", pooled),
                             ("device, --frame_pooling model", per_video_unpooled)):
        print(f"  {label:<38} {per_video / 1024:7.0f} KiB   {per_video * LLP_TOTAL_VIDEOS / GB:6.2f} GB")
    print("  val metrics x100 of the project-trained model with float32 / float16 frames")
    print(f"    float32  {metric_line(metrics)}")
    print(f"    float16  {metric_line(metrics16)}")
    print(f"    max difference {100 * max_metric_difference(metrics, metrics16):.2f} points")
    report.append(f"float16 frames: host memory x{per_video16 / per_video32:.2f}, val metrics max change "
                  f"{100 * max_metric_difference(metrics, metrics16):.2f} points")

    if args.time_origin:
        report.append(time_origin(args, device, root, paths, work_dir))

    print(f"\nsummary ({device_description(device)})")
    for line in report:
        print(f"  {line}")


def time_origin(args, device, root, paths, work_dir):
    """Wall time of DHHN_origin.sh (train, then test) on the synthetic LLP, packed cache warm; on CUDA
    also with --cuda_graph. Returns the report line."""
    # build the packed cache a first run of the pipeline would (default place, frames pooled at load)
    for name in ("train", "val", "test"):
        load(paths, name, default_cache_dir(paths.audio_dir), pool_frames=True)
    variants = [("default flags", [])]
    if device.type == "cuda" and not args.no_cuda_graph:
        variants.append(("--cuda_graph", ["--cuda_graph"]))
    results = []
    for label, extra in variants:
        save_dir = os.path.join(work_dir, "origin_models_" + str(len(results)))
        command = ["sh", "DHHN_origin.sh", "--device", str(device), "--model_save_dir", save_dir,
                   "--progress", "off"] + extra
        start = time.perf_counter()
        result = subprocess.run(command, cwd=REPO_ROOT, env=dict(os.environ, LLP_ROOT=root),
                                capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            print(result.stdout[-4000:], result.stderr[-4000:])
            results.append(f"{label} FAILED (exit {result.returncode}) after {seconds:.1f} s")
            continue
        print(f"\nDHHN_origin.sh {label} (train {args.n_train} videos, then test {args.n_test}; packed cache "
              f"warm): {seconds:.1f} s")
        results.append(f"{label} {seconds:.1f} s")
    return "DHHN_origin.sh end to end: " + "; ".join(results)


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
