"""A model scores LFAV-shaped videos of 60-120 s end to end: the synthetic LFAV read by the release
readers, DHHN and HAN over LFAV's 35 classes on padded batches, LFAV's metrics on the outputs."""
import numpy as np
import pytest
import torch

from avvp_data.lfav import LFAV_CLASSES, read_split_weak_labels, read_truth, snippet_counts
from avvp_data.synthetic_lfav import feature_dirs, generate_synthetic_lfav, label_paths
from engine.variable_length import VideoLengthError, predict_videos
from nets import build_han, build_hcmn
from utils.lfav_metrics import evaluate_videos, snippet_predictions, snippet_probabilities

LFAV_FEATURE_DIMS = {"audio": 128, "frames": 512, "snippets": 512}


@pytest.fixture(scope="module")
def lfav_test_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("lfav")
    generate_synthetic_lfav(str(root), n_train=2, n_val=2, n_test=5, min_length=60, max_length=120, seed=3)
    paths, folders = label_paths(str(root))["test"], feature_dirs(str(root))
    names = list(read_split_weak_labels(paths["video"], paths["audio"], paths["visual"])["video"])
    lengths = snippet_counts(folders["audio"], names)
    videos = [{kind: np.load(f"{folder}/{name}.npy") for kind, folder in folders.items()} for name in names]
    truth = {modality: read_truth(paths[f"{modality}_truth"], lengths) for modality in ("audio", "visual")}
    return names, videos, lengths, truth


@pytest.mark.parametrize("build", [
    lambda: build_hcmn(LFAV_FEATURE_DIMS, num_classes=len(LFAV_CLASSES)),
    lambda: build_han(LFAV_FEATURE_DIMS, num_classes=len(LFAV_CLASSES)),
], ids=["dhhn", "han"])
def test_lfav_videos_are_scored_on_padded_batches_as_one_by_one(lfav_test_split, build, single_thread):
    names, videos, lengths, truth = lfav_test_split
    assert len(set(lengths.values())) > 1   # batches of several lengths
    torch.manual_seed(0)
    model = build()
    batched = predict_videos(model, names, videos, "cpu", batch_size=3)
    alone = predict_videos(model, names, videos, "cpu", batch_size=1)
    for name, together, single in zip(names, batched, alone):
        assert together["frame_prob"].shape == (lengths[name], 2, len(LFAV_CLASSES))
        for key in together:
            np.testing.assert_allclose(together[key], single[key], rtol=0, atol=2e-6)
    decided = [snippet_predictions(out["frame_prob"], out["audio_prob"], out["visual_prob"]) for out in batched]
    probs = [snippet_probabilities(out["frame_prob"]) for out in batched]
    results = evaluate_videos([d[0] for d in decided], [d[1] for d in decided],
                              [truth["audio"][name] for name in names], [truth["visual"][name] for name in names],
                              [p[0] for p in probs], [p[1] for p in probs])
    assert results["per_video"]["seg_audio"].shape == (len(names),)
    for key in ("seg_audio", "evt_audio", "evt_visual", "evt_type"):
        assert 0 <= results[key] <= 1, key
    # as in the release, a class without a positive snippet makes the mAP NaN (a few videos lack some)
    for modality in ("audio", "visual"):
        pooled = np.concatenate([truth[modality][name] for name in names], axis=1)
        absent = bool((pooled.sum(axis=1) == 0).any())
        assert np.isnan(results[f"map_{modality}"]) == absent
        assert absent or 0 <= results[f"map_{modality}"] <= 1


def test_a_video_whose_kinds_disagree_on_its_length_is_named(single_thread):
    model = build_han(LFAV_FEATURE_DIMS, num_classes=len(LFAV_CLASSES))
    video = {"audio": np.zeros((60, 128), np.float32), "frames": np.zeros((60, 512), np.float32),
             "snippets": np.zeros((59, 512), np.float32)}
    with pytest.raises(VideoLengthError, match="abcdefghijk: audio has 60 segments, snippets 59"):
        predict_videos(model, ["abcdefghijk"], [video], "cpu")
