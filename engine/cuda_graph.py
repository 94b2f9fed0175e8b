"""The whole training step (gather, forward, losses, backward, the three optimizer steps) as one
CUDA graph, replayed per batch (`--cuda_graph`).

The DHHN step is launch-bound on a GPU: hundreds of small kernels per batch. Following PyTorch's
whole-network capture recipe (CUDA semantics notes, "CUDA Graphs"), the step is warmed up on a
side stream, captured once with static buffers and replayed for every full batch; the ragged last
batch of an epoch runs eagerly on the same nets and optimizers. Requirements this module meets:
  - static input: only the batch's index vector is copied in per replay; the gather from the
    device-resident TensorSplit happens inside the graph;
  - capturable optimizers: Adam with capturable=True and its learning rate as a device tensor,
    so that a StepLR change (an in-place fill of that tensor) reaches the captured graph;
  - optimizer state exists before capture (the warm-up creates it), and the warm-up leaves no
    trace: parameters, buffers and optimizer state are restored afterwards, so the run takes
    exactly the steps of the eager loop;
  - dropout uses the graph-safe default CUDA generator (a fresh mask each replay).
Numerics: float32 as the eager loop, but dropout masks come from another random stream, and
capturable Adam computes its bias corrections on the device; results agree within run-to-run noise.
"""
import warnings

import torch

from utils.errors import UserError


class CudaGraphError(UserError):
    """A CUDA graph was requested where it cannot work (no CUDA device)."""


def check_device(device):
    """Raise CudaGraphError unless `device` is a CUDA device."""
    device = torch.device(device)
    if device.type != "cuda":
        raise CudaGraphError(f"--cuda_graph captures the training step as a CUDA graph and needs a CUDA "
                             f"device, got {device}; drop --cuda_graph or use --device cuda")


def make_capturable(optimizer, device):
    """Prepare an Adam-like optimizer for capture, in place: capturable=True, learning rate as a
    0-d float32 tensor on `device` (schedulers then update it in place), step counts on `device`."""
    device = torch.device(device)
    for group in optimizer.param_groups:
        group["capturable"] = True
        lr = group["lr"]
        if not (torch.is_tensor(lr) and lr.device == device):
            group["lr"] = torch.tensor(float(lr), dtype=torch.float32, device=device)
    for state in optimizer.state.values():
        if torch.is_tensor(state.get("step")):
            state["step"] = state["step"].to(device)


def _training_tensors(nets, optimizers):
    """Every tensor a training step changes: parameters, buffers (BatchNorm statistics) and
    optimizer state, each once."""
    tensors, seen = [], set()
    for net in nets:
        for tensor in list(net.parameters()) + list(net.buffers()):
            if id(tensor) not in seen:
                seen.add(id(tensor))
                tensors.append(tensor)
    for optimizer in optimizers:
        for state in optimizer.state.values():
            for value in state.values():
                if torch.is_tensor(value) and id(value) not in seen:
                    seen.add(id(value))
                    tensors.append(value)
    return tensors


class preserved_training_state:
    """Context manager: training steps run inside it leave no trace on the nets and optimizers.

    On exit every parameter, buffer and existing optimizer-state tensor gets its value back, in
    place (the same storage, as a captured graph needs), and optimizer state created inside is
    reset to zeros, which is Adam's fresh state (step 0, zero moments). Not for optimizers whose
    fresh state is not all zeros.
    """

    def __init__(self, nets, optimizers):
        self.nets, self.optimizers = list(nets), list(optimizers)

    def __enter__(self):
        self._saved = [(tensor, tensor.detach().clone()) for tensor in _training_tensors(self.nets, self.optimizers)]
        return self

    def __exit__(self, *exc_info):
        saved_ids = {id(tensor) for tensor, _ in self._saved}
        with torch.no_grad():
            for tensor, value in self._saved:
                tensor.copy_(value)
            for tensor in _training_tensors(self.nets, self.optimizers):
                if id(tensor) not in saved_ids:
                    tensor.zero_()
        self._saved = None
        return False


class GraphedTrainStep:
    """Callable index -> losses that runs `step_fn(data.gather(index))` as one replayed CUDA graph.

    step_fn: batch dict -> dict of loss tensors, doing zero_grad, forward, backward and the
        optimizer steps (an engine.TrainStep).
    data: the device-resident TensorSplit the indices point into.
    batch_size: the graph's static batch size; `accepts` is true for index vectors of that length.
    nets, optimizers: what step_fn trains; the optimizers are made capturable here.
    Capture happens on the first call. The returned losses are the graph's static outputs:
    read them before the next call.
    """

    def __init__(self, step_fn, data, batch_size, nets, optimizers, warmup_steps=3):
        check_device(data.device)
        self.step_fn, self.data, self.batch_size = step_fn, data, batch_size
        self.nets, self.optimizers = list(nets), list(optimizers)
        self.warmup_steps = warmup_steps
        for optimizer in self.optimizers:
            make_capturable(optimizer, data.device)
        self.static_index = torch.zeros(batch_size, dtype=torch.long, device=data.device)
        self.graph = None
        self.static_losses = None
        self._static_grads = None

    def accepts(self, index):
        return index.numel() == self.batch_size

    def __call__(self, index):
        if not self.accepts(index):
            raise ValueError(f"the captured step takes batches of {self.batch_size}, got {index.numel()}")
        self.static_index.copy_(index)
        if self.graph is None:
            self._capture()
        self.graph.replay()
        return self.static_losses

    def _run_step(self):
        return self.step_fn(self.data.gather(self.static_index))

    def _capture(self):
        device = self.data.device
        with torch.cuda.device(device):
            rng_state = torch.cuda.get_rng_state(device)
            # warm-up and capture on one side stream (cuBLAS workspaces and optimizer state exist
            # before capture); the warm-up steps are then undone
            stream = torch.cuda.Stream(device)
            with preserved_training_state(self.nets, self.optimizers):
                stream.wait_stream(torch.cuda.current_stream(device))   # after the snapshot copies
                with torch.cuda.stream(stream), warnings.catch_warnings():
                    # eager steps of a capturable optimizer warn once; here that is intended
                    warnings.filterwarnings("ignore", message=".*capturable=True.*")
                    for _ in range(self.warmup_steps):
                        self._run_step()
                torch.cuda.current_stream(device).wait_stream(stream)
            torch.cuda.synchronize(device)
            torch.cuda.set_rng_state(rng_state, device)
            for optimizer in self.optimizers:
                optimizer.zero_grad(set_to_none=True)   # backward allocates .grad in the graph's pool
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=stream):
                losses = self._run_step()
        self.static_losses = {name: value.detach() for name, value in losses.items()}
        # keep the captured gradient buffers alive even if an eager step resets .grad
        self._static_grads = [p.grad for net in self.nets for p in net.parameters()]
        self.graph = graph
