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


def pad_videos(videos):
    """({"audio", "frames", "snippets": (B, T_max * rows per segment, D) float32}, (B, T_max) bool
    mask, True on each video's own segments) of per-video {"audio": (T_i, Da), "frames": (T_i * F,
    Df), "snippets": (T_i, Ds)} numpy dicts, zeros after each video's own segments."""
    lengths = torch.tensor([video["audio"].shape[0] for video in videos])
    longest = int(lengths.max())
    padded = {}
    for key in FEATURE_KEYS:
        rows_per_segment = videos[0][key].shape[0] // videos[0]["audio"].shape[0]
        padded[key] = torch.zeros(len(videos), longest * rows_per_segment, videos[0][key].shape[1])
        for index, video in enumerate(videos):
            padded[key][index, :video[key].shape[0]] = torch.from_numpy(video[key])
    return padded, torch.arange(longest)[None, :] < lengths[:, None]


class PaddedSplit(TensorSplit):
    """A split of videos of different lengths (LFAV, long own videos) served like a TensorSplit:
    every batch holds its videos padded with zeros to the batch's longest one, and carries "mask"
    (B, T), True on each video's own segments. The networks and DHHN's guides honour the mask, so a
    padded segment changes no output (tests/test_variable_length.py). Each video is held at its own
    length, so memory is that of the features, not of N x the longest video.

    videos: one {"audio": (T_i, Da), "frames": (T_i * F, Df), "snippets": (T_i, Ds)} numpy dict per
    video; labels: (N, C) float32 weak labels.
    """

    def __init__(self, name, filenames, videos, labels, device):
        self.name = name
        self.filenames = list(filenames)
        self.device = device
        self.sequences = {key: [torch.from_numpy(video[key]).to(device) for video in videos] for key in FEATURE_KEYS}
        self.lengths = [video["audio"].shape[0] for video in videos]
        self.tensors = {"labels": torch.as_tensor(labels, dtype=torch.float32).to(device)}

    def add_sequences(self, key, arrays):
        """Register per-video (T_i, ...) arrays, e.g. segment pseudo-labels, padded per batch like the
        features."""
        if [array.shape[0] for array in arrays] != self.lengths:
            raise ValueError(f"{key}: the arrays' lengths are not those of the split's videos")
        self.sequences[key] = [torch.as_tensor(array, dtype=torch.float32).to(self.device) for array in arrays]

    def gather(self, index):
        """The batch dict of a 1-D index tensor: the per-video extras gathered, the features and other
        per-video sequences padded."""
        batch = {key: value[index] for key, value in self.tensors.items()}
        chosen = index.tolist()
        for key, sequences in self.sequences.items():
            batch[key] = torch.nn.utils.rnn.pad_sequence([sequences[i] for i in chosen], batch_first=True)
        lengths = torch.tensor([self.lengths[i] for i in chosen], device=self.device)
        batch["mask"] = torch.arange(int(lengths.max()), device=self.device)[None, :] < lengths[:, None]
        return batch
