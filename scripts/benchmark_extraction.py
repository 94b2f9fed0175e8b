"""Feature extraction speed and memory per 10-s window, for each kind, measured in one run.

    python scripts/benchmark_extraction.py                          # every kind, a 30-s test video, CPU
    python scripts/benchmark_extraction.py --kinds clip clap --seconds 20
    python scripts/benchmark_extraction.py --video my_clip.mp4 --device cuda

Each kind runs in a child process of its own (random weights, same architecture and input sizes as
the published networks), so that its peak memory is its own: resident memory on CPU (ru_maxrss),
allocated GPU memory on CUDA. Printed per kind: the seconds to build the network, seconds per
window (decoding included; the first window also reads the whole audio track), how many times
faster than real time that is, and the peak memory, plus each kind's time relative to VGGish's.
Without --video a test video (moving colours, a tone; H.264 or MPEG-4 and AAC) is written first.
Needs pip install -e ".[video]".
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

from extraction import decode
from extraction.extractor import KINDS, FeatureExtractor
from extraction.windows import WINDOW_SECONDS
from scripts.isolated_measurement import peak_memory_mb, report, run_in_child
from utils.errors import UserError

TEST_VIDEO_FPS = 25
TEST_VIDEO_SIZE = (320, 240)
TEST_AUDIO_RATE = 44100
REFERENCE_KIND = "audio"


def write_test_video(path, seconds):
    """An .mp4 of `seconds`: a drifting colour gradient and a 440-Hz tone, enough to exercise every
    decoder and network path (the content does not change the cost)."""
    av = decode.require_av()
    width, height = TEST_VIDEO_SIZE
    with av.open(path, mode="w", format="mp4") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        video = container.add_stream(codec, rate=TEST_VIDEO_FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=TEST_AUDIO_RATE)
        audio.layout = "mono"
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        for index in range(seconds * TEST_VIDEO_FPS):
            shift = 255 * index / (seconds * TEST_VIDEO_FPS)
            image = np.broadcast_to((ramp + shift * np.array([1.0, 0.5, 0.25])) % 256, (height, width, 3))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image, dtype=np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        samples = np.sin(2 * np.pi * 440 * np.arange(seconds * TEST_AUDIO_RATE) / TEST_AUDIO_RATE)
        samples = (0.3 * samples).astype(np.float32)[None]
        chunk = audio.codec_context.frame_size or 1024
        for start in range(0, samples.shape[1], chunk):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + chunk]),
                                               format="fltp", layout="mono")
            frame.sample_rate, frame.pts = TEST_AUDIO_RATE, start
            container.mux(audio.encode(frame))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path


def measure_kind(kind, video, device):
    """{build_s, window_s (per window), first_window_s, windows, built_mb, peak_mb} of one kind."""
    device = torch.device(device)
    started = time.perf_counter()
    extractor = FeatureExtractor(kinds=(kind,), device=device, random_weights=True)
    build_s = time.perf_counter() - started
    built_mb = peak_memory_mb(device)
    info = decode.probe(video)
    seconds = []
    extractor.extract(info, on_window=lambda number, windows, elapsed: seconds.append(elapsed))
    return {"kind": kind, "build_s": build_s, "first_window_s": seconds[0],
            "window_s": float(np.mean(seconds[1:] if len(seconds) > 1 else seconds)),
            "windows": len(seconds), "built_mb": built_mb, "peak_mb": peak_memory_mb(device)}


def run_child(kind, video, args):
    return run_in_child(os.path.abspath(__file__), ["--child", kind, "--video", video, "--device", args.device],
                        args.threads, f"--kinds {kind}")


def format_results(results, device):
    memory = "peak GPU MB" if device.startswith("cuda") else "peak RSS MB"
    reference = next((r for r in results if r["kind"] == REFERENCE_KIND), None)
    header = (f"{'kind':<12}  {'build s':>7}  {'s/window':>8}  {'1st window s':>12}  {'x real time':>11}  "
              f"{memory:>11}  {'after build MB':>14}" + (f"  {'time vs audio':>13}" if reference else ""))
    lines = [header]
    for r in results:
        line = (f"{r['kind']:<12}  {r['build_s']:>7.1f}  {r['window_s']:>8.2f}  {r['first_window_s']:>12.2f}  "
                f"{WINDOW_SECONDS / r['window_s']:>11.1f}  {r['peak_mb']:>11.0f}  {r['built_mb']:>14.0f}")
        if reference:
            line += f"  {r['window_s'] / reference['window_s']:>12.1f}x"
        lines.append(line)
    return "\n".join(lines)


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="the kinds to measure")
    parser.add_argument("--video", default=None, help="a video to extract (default: a test video is written)")
    parser.add_argument("--seconds", type=int, default=30,
                        help="length of the test video (default 30: three windows)")
    parser.add_argument("--device", default="cpu", help="'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        report(measure_kind(args.child, args.video, args.device))
        return
    if args.seconds < WINDOW_SECONDS:
        raise UserError(f"--seconds {args.seconds}: a window is {WINDOW_SECONDS} s")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: CUDA is not available here")
    with tempfile.TemporaryDirectory() as work:
        video = args.video
        if video is None:
            video = write_test_video(os.path.join(work, "test_video.mp4"), args.seconds)
        elif not os.path.isfile(video):
            raise UserError(f"--video {video}: no such file")
        info = decode.probe(video)
        print(f"extraction on {args.device} ({torch.get_num_threads()} threads), random weights, "
              f"{info.duration:.1f}-s video {video if args.video else '(test video)'}", flush=True)
        results = []
        for kind in args.kinds:
            print(f"measuring {kind} ...", flush=True)
            results.append(run_child(kind, video, args))
    print(format_results(results, args.device))


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
