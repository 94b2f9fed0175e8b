"""Speed and memory of the parsing networks on long videos (LFAV, up to 300 s; PROTOCOL.md §16),
measured in one run, with the ratios between them.

    python scripts/benchmark_long_videos.py                       # DHHN and HAN, CPU
    python scripts/benchmark_long_videos.py --models dhhn --device cuda --longest 600

Each measurement runs in a child process of its own (random weights, LFAV's feature sizes and 35
classes), so that its peak memory is its own: resident memory on CPU (ru_maxrss), allocated GPU
memory on CUDA. Per model:
  predict, one --longest-s video alone;
  predict, --videos videos of lengths spread evenly over [--shortest, --longest] s: in padded
  batches of --batch_size sorted by length (engine/variable_length.predict_videos), and one by one;
  predict, the same number of LLP-sized 10-s videos in one batch (the cost per second of video that
  the model has on LLP, for the ratio);
  one training step (the recipe's nets, losses and Adam) on a padded batch of --batch_size videos of
  those lengths.
Then the memory of holding a whole split of such videos: at their own lengths (PaddedSplit pads each
batch) against padded to the longest video.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

from avvp_data.lfav import FEATURE_KINDS, LFAV_NUM_CLASSES
from avvp_data.tensor_split import PaddedSplit
from scripts.isolated_measurement import peak_memory_mb, report, run_in_child
from utils.errors import UserError

FEATURE_DIMS = {kind: width for kind, (_, width) in FEATURE_KINDS.items()}
MEASUREMENTS = ("alone", "batched", "one_by_one", "llp_sized", "train_step")
REPEATS = 3   # timed repetitions after one warm-up; the median is reported


def video_lengths(count, shortest, longest):
    return [int(round(length)) for length in np.linspace(shortest, longest, count)]


def random_videos(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [{kind: rng.standard_normal((length, width)).astype(np.float32) for kind, width in FEATURE_DIMS.items()}
            for length in lengths]


def timed(function, device):
    """Median seconds of REPEATS calls after a warm-up call."""
    function()
    seconds = []
    for _ in range(REPEATS):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds))


def build(model_name, device):
    """(recipe, TrainingModule on `device`, criterion, optimizers) of --model `model_name` for LFAV."""
    from config import resolve_config
    from main_DHHN import get_args_parser
    from recipes import RECIPES
    recipe = RECIPES[model_name]
    config = resolve_config(get_args_parser().parse_args(["--dataset", "lfav", "--model", model_name]))
    model = recipe.build_model(recipe.model_config(config, FEATURE_DIMS))
    module = recipe.training_module(model, recipe.build_guides(config, FEATURE_DIMS)).to(device)
    rates = recipe.learning_rates(config)
    optimizers = [torch.optim.Adam(net.parameters(), lr=rates[name]) for name, net in module.nets.items()]
    return recipe, module, recipe.criterion(config), optimizers


def measure(model_name, what, args):
    """{"seconds", "videos", "video_seconds", "peak_mb"} of one measurement."""
    from engine.loops import TrainStep
    from engine.variable_length import predict_videos
    device = torch.device(args.device)
    torch.manual_seed(0)
    _, module, criterion, optimizers = build(model_name, device)
    lengths = video_lengths(args.videos, args.shortest, args.longest)
    if what == "alone":
        lengths = [args.longest]
    elif what == "llp_sized":
        lengths = [10] * args.videos
    videos = random_videos(lengths)
    names = [f"video{index:03d}" for index in range(len(videos))]
    model = module.model
    if what == "train_step":
        chosen = video_lengths(args.batch_size, args.shortest, args.longest)
        videos = random_videos(chosen)
        labels = (np.random.default_rng(1).random((len(videos), LFAV_NUM_CLASSES)) < 0.1).astype(np.float32)
        data = PaddedSplit("bench", names[:len(videos)], videos, labels, device)
        for modality in ("audio", "visual"):
            data.add(f"{modality}_labels", torch.from_numpy(labels))
        batch = data.gather(torch.arange(len(videos), device=device))
        step = TrainStep(module, criterion, optimizers)
        module.train()
        seconds = timed(lambda: step(batch), device)
        return {"seconds": seconds, "videos": len(videos), "video_seconds": sum(chosen),
                "peak_mb": peak_memory_mb(device)}
    batch_size = 1 if what in ("alone", "one_by_one") else args.batch_size
    seconds = timed(lambda: predict_videos(model, names, videos, device, batch_size), device)
    return {"seconds": seconds, "videos": len(videos), "video_seconds": sum(lengths), "peak_mb": peak_memory_mb(device)}


def run_child(model_name, what, args):
    return run_in_child(os.path.abspath(__file__),
                        ["--child", model_name, what, "--device", args.device, "--videos", str(args.videos),
                         "--shortest", str(args.shortest), "--longest", str(args.longest),
                         "--batch_size", str(args.batch_size)], args.threads, f"{model_name} {what}")


def format_model(model_name, results, args):
    memory = "peak GPU MB" if args.device.startswith("cuda") else "peak RSS MB"
    titles = {"alone": f"predict one {args.longest}-s video",
              "batched": f"predict {args.videos} videos of {args.shortest}-{args.longest} s, batches of "
                         f"{args.batch_size}",
              "one_by_one": f"predict the same {args.videos} videos one by one",
              "llp_sized": f"predict {args.videos} LLP-sized 10-s videos, one batch",
              "train_step": f"train step, {args.batch_size} videos of {args.shortest}-{args.longest} s"}
    width = max(len(title) for title in titles.values())
    lines = [f"{model_name}:", f"  {'':<{width}}  {'seconds':>8}  {'ms per video-s':>14}  {memory:>11}"]
    for what in MEASUREMENTS:
        result = results[what]
        per_second = 1000 * result["seconds"] / result["video_seconds"]
        lines.append(f"  {titles[what]:<{width}}  {result['seconds']:>8.3f}  {per_second:>14.3f}  "
                     f"{result['peak_mb']:>11.0f}")
    per_second = {what: results[what]["seconds"] / results[what]["video_seconds"] for what in MEASUREMENTS}
    lines.append(f"  ratios: padded batches take {per_second['batched'] / per_second['one_by_one']:.2f}x the time of "
                 f"one by one; a second of long video costs {per_second['batched'] / per_second['llp_sized']:.1f}x "
                 f"a second of LLP-sized video in batches (attention over T)")
    return "\n".join(lines)


def split_memory_line(args):
    """What holding a whole split of such videos takes, at own lengths against padded to the longest."""
    lengths = video_lengths(args.split_videos, args.shortest, args.longest)
    row_bytes = 4 * sum(FEATURE_DIMS.values())
    own, padded = row_bytes * sum(lengths), row_bytes * len(lengths) * max(lengths)
    return (f"holding {args.split_videos} such videos (float32 features): {own / 2 ** 30:.2f} GiB at their own "
            f"lengths (PaddedSplit) vs {padded / 2 ** 30:.2f} GiB padded to the longest ({padded / own:.2f}x)")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["dhhn", "han"], choices=("dhhn", "han", "ma"))
    parser.add_argument("--device", default="cpu", help="'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--videos", type=int, default=16, help="videos of the prediction measurements")
    parser.add_argument("--shortest", type=int, default=60, help="shortest video in seconds (1-s snippets)")
    parser.add_argument("--longest", type=int, default=300, help="longest video in seconds")
    parser.add_argument("--batch_size", type=int, default=16, help="videos per padded batch")
    parser.add_argument("--split_videos", type=int, default=3721, help="videos of the split-memory line "
                        "(default: LFAV's training split)")
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    return parser


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        report(measure(*args.child, args))
        return
    if not 1 <= args.shortest <= args.longest or args.videos < 1 or args.batch_size < 1:
        raise UserError("need 1 <= --shortest <= --longest, --videos >= 1 and --batch_size >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: CUDA is not available here")
    print(f"long videos on {args.device} ({torch.get_num_threads()} threads), random weights, LFAV sizes", flush=True)
    for model_name in args.models:
        results = {}
        for what in MEASUREMENTS:
            print(f"measuring {model_name} {what} ...", flush=True)
            results[what] = run_child(model_name, what, args)
        print(format_model(model_name, results, args), flush=True)
    print(split_memory_line(args))


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
