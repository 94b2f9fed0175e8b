"""Model outputs for videos of different lengths (LFAV, your own long videos; PROTOCOL.md §16): the videos are
padded into batches of similar length with the mask of each one's own segments, which the
networks honour (a video's outputs do not depend on the batch it is in: tests/test_variable_length.py),
and each video's outputs are cut back to its own length."""
import torch

from avvp_data.tensor_split import pad_videos
from engine.loops import EVAL_BATCH_SIZE, check_finite_outputs
from utils.errors import UserError
from utils.lfav_metrics import evaluate_videos, snippet_predictions, snippet_probabilities

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
        batch, mask = pad_videos([videos[index] for index in chosen])
        batch = {key: value.to(device) for key, value in batch.items()}
        outputs = model(batch["audio"], batch["frames"], batch["snippets"], mask.to(device))
        check_finite_outputs({key: outputs[key] for key in VIDEO_LEVEL_KEYS}, [names[i] for i in chosen],
                             "variable-length prediction")
        for row, index in enumerate(chosen):
            results[index] = {key: outputs[key][row].float().cpu().numpy() for key in VIDEO_LEVEL_KEYS}
            results[index]["frame_prob"] = outputs["frame_prob"][row, :lengths[index]].float().cpu().numpy()
    return results


def score_lfav(outputs, gt_audio, gt_visual):
    """LFAV's metrics (utils/lfav_metrics.evaluate_videos) of `predict_videos` outputs against the
    per-video (C, T_i) truths: snippets decided by the release's rule (frame and video-level
    modality probability >= 0.5), ranked by the raw frame probabilities for mAP."""
    decided = [snippet_predictions(out["frame_prob"], out["audio_prob"], out["visual_prob"]) for out in outputs]
    probs = [snippet_probabilities(out["frame_prob"]) for out in outputs]
    return evaluate_videos([pair[0] for pair in decided], [pair[1] for pair in decided], gt_audio, gt_visual,
                           [prob[0] for prob in probs], [prob[1] for prob in probs])


def evaluate_lfav(model, split, device, batch_size=EVAL_BATCH_SIZE):
    """predict_videos + score_lfav: the LFAV metrics dict of one model on an LFAVSplit."""
    outputs = predict_videos(model, split.filenames, split.videos, device, batch_size)
    return score_lfav(outputs, split.gt_audio, split.gt_visual)
