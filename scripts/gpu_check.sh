#!/bin/sh
# Issue 23: every CUDA path and the GPU speed numbers, in one prepared run on a machine with a GPU.
#
#     sh scripts/gpu_check.sh            # RESULTS=path/to/file to write elsewhere
#
# Each step's output also goes to the results file (default results/gpu_check.txt) as it is printed, with the step's exit code
# after it, so that the numbers of the steps before survive a step that fails or runs out of time
# (STEP_TIMEOUT seconds each, default 300). Steps: the device and versions; the CUDA tests (graph ==
# eager without dropout, learning-rate changes reaching the graph, bf16, train + test on CUDA,
# extraction on CUDA == CPU); the LLP-size training and evaluation benchmark (eager, fused Adam,
# --cuda_graph, bf16, the published-style loop, loading from files vs the packed cache, peak
# memory); extraction throughput per 10-s window; the long-video benchmark (LFAV, 300-s videos).
set -u
RESULTS=${RESULTS:-results/gpu_check.txt}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
mkdir -p "$(dirname "$RESULTS")"
RESULTS=$(cd "$(dirname "$RESULTS")" && pwd)/$(basename "$RESULTS")
cd "$(dirname "$0")/.."
: > "$RESULTS"
step() {
  echo "== $* ($(date -u +%H:%M:%S))" | tee -a "$RESULTS"
  { timeout "$STEP_TIMEOUT" "$@"; echo "== exit code $?"; } 2>&1 | tee -a "$RESULTS"
}
step nvidia-smi
step python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"
step python -m pytest -q tests/test_cuda.py
step python scripts/benchmark.py --llp --device cuda --epochs 2 --bf16 --time_origin
step python scripts/benchmark_extraction.py --device cuda
step python scripts/benchmark_long_videos.py --device cuda
echo "results: $RESULTS"
