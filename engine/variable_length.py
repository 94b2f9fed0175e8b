"""Model outputs for videos of different lengths (LFAV, your own long videos; PROTOCOL.md §16): the videos are
padded into batches of similar length with the mask of each one's own segments, which the
networks honour (a video's outputs do not depend on the batch it is in: tests/test_variable_length.py),
and each video's outputs are cut back to its own length."""
import numpy as np
import torch

from engine.loops import EVAL_BATCH_SIZE, check_finite_outputs
from utils.errors import UserError

FEATURE_KEYS = ("audio", "frames", "snippets")
VIDEO_LEVEL_KEYS = ("global_prob", "audio_prob", "visual_prob")


class VideoLengthError(UserError):
    """A video whose feature kinds disagree on its number of segments; names it."""


def segment_count(name, features):
    """T of one video's {"audio": (T, Da), "frames": (T*F, Df), "snippets": (T, Ds)}; its kinds must agree."""
    length = features["audio"].shape[0]
    if features["snippets"].shape[0] != length or features["frames"].shape[0] % length:
        raise VideoLengthError(f"{name}: audio has {length} segments, snippets {features['snippets'].shape[0]} and "
                               f"frames {features['frames'].shape[0]} rows, which are not one video's")
    return length


def pad_batch(videos, device):
    """({kind: (B, T_max * rows per segment, D) float32}, (B, T_max) bool mask) of a list of
    per-video feature dicts (numpy), padded with zeros after each video's own segments."""
    lengths = [video["audio"].shape[0] for video in videos]
    longest = max(lengths)
    batch = {}
    for key in FEATURE_KEYS:
        rows_per_segment = videos[0][key].shape[0] // lengths[0]
        padded = np.zeros((len(videos), longest * rows_per_segment, videos[0][key].shape[1]), dtype=np.float32)
        for index, video in enumerate(videos):
            padded[index, :video[key].shape[0]] = video[key]
        batch[key] = torch.from_numpy(padded).to(device)
    mask = torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]
    return batch, mask.to(device)


@torch.no_grad()
def predict_videos(model, names, videos, device, batch_size=EVAL_BATCH_SIZE):
    """[{"global_prob", "audio_prob", "visual_prob": (C,), "frame_prob": (T_i, 2, C)} numpy] of
    every video, in the order given. names: the videos' names (for errors); videos: their feature
    dicts. Batches hold videos of similar length (sorted), so that little is padding."""
    lengths = [segment_count(name, video) for name, video in zip(names, videos)]
    order = sorted(range(len(videos)), key=lambda index: lengths[index])
    results = [None] * len(videos)
    model.eval()
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        batch, mask = pad_batch([videos[index] for index in chosen], device)
        outputs = model(batch["audio"], batch["frames"], batch["snippets"], mask)
        check_finite_outputs({key: outputs[key] for key in VIDEO_LEVEL_KEYS}, [names[i] for i in chosen],
                             "variable-length prediction")
        for row, index in enumerate(chosen):
            results[index] = {key: outputs[key][row].float().cpu().numpy() for key in VIDEO_LEVEL_KEYS}
            results[index]["frame_prob"] = outputs["frame_prob"][row, :lengths[index]].float().cpu().numpy()
    return results
