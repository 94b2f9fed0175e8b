"""The `clap_windows` kind: CLAP's (10, 512) unit audio embeddings of VALOR's ten ~1-s windows per
10-s window of a video (extraction/extractor.py), equal to extraction.clap_text's
clap_window_embeddings on the same decoded audio and weights, loaded from the `clap` kind's
checkpoint, and read as they are by scripts/make_zero_shot_labels.py (docs/ZERO_SHOT.md)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, script_path
from extraction import clap_audio, clap_mel, clap_text, decode, records
from extraction.extractor import KINDS, OFFICIAL_KINDS, FeatureExtractor, feature_folder, model_inputs
from utils.errors import UsageError
from video_fixtures import write_test_video

av = pytest.importorskip("av")

VIDEO_SECONDS = 12   # two windows: 0-10 s and the end-aligned 2-12 s
IDS = ["clip_0_10", "clip_2_12"]
STARTS = [0, 2]


def test_the_default_kinds_are_unchanged_and_clap_windows_feeds_no_model():
    from scripts import extract_features as cli
    assert OFFICIAL_KINDS == ("audio", "frames", "snippets")
    # the seeds of random weights follow KINDS' order: the earlier kinds keep theirs
    assert KINDS == ("audio", "frames", "snippets", "clap", "clip", "clap_windows")
    parser = cli.get_args_parser()
    assert parser.parse_args(["v.mp4", "--out_dir", "o"]).kinds == list(OFFICIAL_KINDS)
    args = parser.parse_args(["v.mp4", "--out_dir", "o", "--kinds", "clap_windows"])
    assert args.kinds == ["clap_windows"] and args.clap_windows_batch == clap_text.CLAP_WINDOWS
    assert feature_folder("root", "clap_windows") == os.path.join("root", "CLAP", "window_embeddings")
    assert model_inputs(("clap", "clip", "snippets", "clap_windows")) == {
        "audio": "clap", "frames": "clip", "snippets": "snippets"}


def seeded_checkpoint(seed, with_audio_projection=True):
    """A checkpoint in 630k-fusion-best.pt's layout ("state_dict", "module." prefixes) holding seeded
    audio-branch and audio-projection weights and a stand-in text entry."""
    torch.manual_seed(seed)
    source = clap_text.CLAPWindowEncoder(clap_audio.htsat_tiny())
    state = {"module.audio_branch." + key: value for key, value in source.encoder.state_dict().items()}
    if with_audio_projection:
        state.update({"module.audio_projection." + key: value
                      for key, value in source.audio_projection.state_dict().items()})
    state["module.text_projection.0.weight"] = torch.zeros(clap_text.JOINT_DIM, 768)
    return source, {"epoch": 45, "name": "seeded", "state_dict": state}


def test_the_kind_loads_the_clap_checkpoint_with_its_audio_projection(tmp_path):
    source, checkpoint = seeded_checkpoint(123)
    torch.save(checkpoint, tmp_path / clap_audio.CHECKPOINT_NAME)
    extractor = FeatureExtractor(kinds=("clap", "clap_windows"), weights_dir=str(tmp_path))
    loaded = extractor.networks["clap_windows"].state_dict()
    assert loaded.keys() == source.state_dict().keys()
    assert all(torch.equal(value, loaded[key]) for key, value in source.state_dict().items())
    # the same checkpoint gives the `clap` kind the same encoder
    assert all(torch.equal(value, loaded["encoder." + key])
               for key, value in extractor.networks["clap"].state_dict().items())
    record = extractor.record("clap_windows")
    assert record["weights"]["file"] == clap_audio.CHECKPOINT_NAME and record["random_weights"] is False
    assert record["rows"] == [clap_text.CLAP_WINDOWS, clap_text.JOINT_DIM]
    torch.save(seeded_checkpoint(123, with_audio_projection=False)[1], tmp_path / clap_audio.CHECKPOINT_NAME)
    with pytest.raises(UsageError, match="does not fit CLAP HTSAT-tiny .* and audio projection"):
        FeatureExtractor(kinds=("clap_windows",), weights_dir=str(tmp_path))


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, single_thread):
    """A 12-s video through `extract_features.py --kinds clap_windows --random_weights` (in process)."""
    from scripts import extract_features as cli
    folder = tmp_path_factory.mktemp("clap_windows")
    video = str(folder / "clip.mp4")
    write_test_video(video, VIDEO_SECONDS)
    out = str(folder / "out")
    entries = cli.main(cli.get_args_parser().parse_args(
        [video, "--out_dir", out, "--kinds", "clap_windows", "--random_weights", "--device", "cpu",
         "--progress", "off"]))
    return folder, video, out, entries


@pytest.mark.e2e
def test_the_kind_writes_unit_rows_per_10s_window_with_its_record(extracted):
    _, _, out, entries = extracted
    folder = feature_folder(out, "clap_windows")
    assert entries["clip"]["ids"] == IDS and entries["clip"]["kinds"] == ["clap_windows"]
    assert sorted(os.listdir(out)) == ["CLAP", "videos.jsonl"]
    assert sorted(os.listdir(folder)) == sorted([records.RECORD_FILE] + [f"{fid}.npy" for fid in IDS])
    arrays = [np.load(os.path.join(folder, f"{fid}.npy")) for fid in IDS]
    for array in arrays:
        assert array.shape == (10, 512) and array.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(array, axis=1), 1, atol=1e-5)
    # each second has its own tone: windows of different seconds embed differently
    assert not np.allclose(arrays[0][0], arrays[0][1], atol=1e-4)
    # the end-aligned window's first second is the first window's third
    np.testing.assert_allclose(arrays[1][0], arrays[0][2], atol=1e-5)
    record = records.read_record(folder)
    assert record["kind"] == "clap_windows" and record["weights"] == "random" and record["random_weights"]
    assert record["network"] == "CLAP HTSAT-tiny (audio branch, feature fusion) and audio projection"
    assert record["rows"] == [10, 512] and "round(linspace(0, N, 11))[:10]" in record["settings"]["windows"]


@pytest.mark.e2e
def test_the_files_equal_clap_window_embeddings_on_the_same_audio_and_weights(extracted, single_thread):
    _, video, out, _ = extracted
    # the same seeded random weights as the script's run (each kind's seed is its own)
    extractor = FeatureExtractor(kinds=("clap_windows",), random_weights=True)
    network = extractor.networks["clap_windows"]
    # a whole CLAPZeroShot (a small text branch) holding the kind's audio projection
    zero_shot = clap_text.CLAPZeroShot(clap_text.CLAPTextBranch(vocab_size=10, width=16, layers=1, heads=2,
                                                                mlp_width=32, max_positions=80)).eval()
    zero_shot.audio_projection.load_state_dict(network.audio_projection.state_dict())
    mono = decode.read_audio(decode.probe(video), clap_mel.SAMPLE_RATE)
    expected = np.stack([clap_text.clap_window_embeddings(
        network.encoder, zero_shot, decode.audio_window(mono, start, 10, clap_mel.SAMPLE_RATE)) for start in STARTS])
    written = np.stack([np.load(os.path.join(feature_folder(out, "clap_windows"), f"{fid}.npy")) for fid in IDS])
    assert np.abs(written - expected).max() <= 1e-6   # measured: 0.0 (one batch of 10, as the function runs)
    # another batch size (3 + 3 + 3 + 1 windows per forward pass) computes the same
    batched = FeatureExtractor(kinds=("clap_windows",), random_weights=True, batch_sizes={"clap_windows": 3})
    _, features = batched.extract(decode.probe(video))
    assert np.abs(features["clap_windows"] - expected).max() <= 1e-6   # measured: 6.7e-8


@pytest.mark.e2e
def test_make_zero_shot_labels_runs_on_the_folder(extracted):
    folder, _, out, _ = extracted
    labels_csv = folder / "labels.csv"
    labels_csv.write_text("filename\tevent_labels\nclip_0_10\tSpeech,Dog\nclip_2_12\tCat\n")
    labelled = folder / "pseudo_labels"
    done = subprocess.run(
        [sys.executable, script_path("make_zero_shot_labels"), "--label_csv", str(labels_csv), "--modality", "clap",
         "--embeddings", feature_folder(out, "clap_windows"), "--random_weights", "--out", str(labelled)],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert "2 video(s) labelled" in done.stdout
    record = json.loads((labelled / "zero_shot_labels.json").read_text())
    assert record["modality"] == "clap" and record["thresholds"] == "valor"
    assert feature_folder(out, "clap_windows") in record["scores"]
    from avvp_data.llp import CLASSES
    for fid, weak in zip(IDS, (("Speech", "Dog"), ("Cat",))):
        labels = np.load(labelled / f"{fid}.npy")
        assert labels.shape == (10, len(CLASSES)) and labels.dtype == np.int64
        outside = [index for index, name in enumerate(CLASSES) if name not in weak]
        assert not labels[:, outside].any()   # only the video's weak-label classes can be on
