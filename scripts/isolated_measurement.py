"""What the benchmark scripts share: each measurement runs in a child process of its own, so that
its peak memory is its own, and hands its result back as one JSON line on stdout."""
import json
import resource
import subprocess
import sys

from utils.errors import UserError

CHILD_RESULT = "benchmark-result: "


def peak_memory_mb(device):
    """Peak allocated GPU memory on CUDA, else the process's peak resident memory (ru_maxrss)."""
    if device.type == "cuda":
        import torch
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux


def report(result):
    """In the child: print `result` (a JSON-able dict) as the line `run_in_child` reads."""
    print(CHILD_RESULT + json.dumps(result), flush=True)


def run_in_child(script, arguments, threads, what):
    """The result `report`ed by `python script arguments [--threads N]` in a child process; a
    failure is a UserError naming `what`, with the child's last line of stderr."""
    command = [sys.executable, script, *arguments] + (["--threads", str(threads)] if threads else [])
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(CHILD_RESULT)]
    if done.returncode != 0 or not lines:
        raise UserError(f"{what}: the measurement failed (exit code {done.returncode}): "
                        f"{done.stderr.strip().splitlines()[-1:] or 'no output'}")
    return json.loads(lines[-1][len(CHILD_RESULT):])
