"""A split's features and labels as tensors on the training device, served in index batches.

The whole split is moved once; a batch is an index gather on the device, so training and
evaluation never read files or copy host memory per step.
"""
import torch

from avvp_data.feature_files import pool_frames_per_segment

FEATURE_KEYS = ("audio", "frames", "snippets")


class TensorSplit:
    """Device-resident view of a split (an LLPSplit of dataloader.py, or anything with its fields).

    features: dict "audio" (N,10,Da), "frames" (N,80,Df), "snippets" (N,10,Ds), float32 or float16.
    labels: (N, 25) float32 weak labels. Optional per-video extras (e.g. refinement flags) are
    registered with `add` and gathered with the same indices.
    """

    def __init__(self, split, device, pool_frames=True):
        self.name = split.name
        self.filenames = list(split.filenames)
        self.device = device
        arrays = {key: getattr(split, key) for key in FEATURE_KEYS}
        if pool_frames:
            arrays["frames"] = pool_frames_per_segment(arrays["frames"], arrays["snippets"].shape[1])
        self.tensors = {key: torch.from_numpy(array).to(device) for key, array in arrays.items()}
        self.tensors["labels"] = torch.from_numpy(split.labels).to(device)

    def __len__(self):
        return len(self.filenames)

    def add(self, key, tensor):
        if tensor.shape[0] != len(self):
            raise ValueError(f"{key}: {tensor.shape[0]} rows for a split of {len(self)} videos")
        self.tensors[key] = tensor.to(self.device)

    def gather(self, index):
        """Batch dict for a 1-D index tensor; half-precision features come back as float32."""
        batch = {key: value[index] for key, value in self.tensors.items()}
        for key in FEATURE_KEYS:
            if batch[key].dtype != torch.float32:
                batch[key] = batch[key].float()
        return batch

    def batch_indices(self, batch_size, generator=None):
        """Index tensors covering the split once; shuffled when a torch.Generator (CPU) is given."""
        if generator is None:
            order = torch.arange(len(self))
        else:
            order = torch.randperm(len(self), generator=generator)
        return order.to(self.device).split(batch_size)
