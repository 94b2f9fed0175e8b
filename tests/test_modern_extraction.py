"""CLAP and CLIP features from video files through the extraction pipeline (windows, records,
folders in VALOR's layout), equal to the standalone networks of extraction/clap_audio.py and
extraction/clip_vision.py (themselves proven equal to laion_clap and transformers on seeded
weights); and parse_video.py with a released model trained on them."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT
from extraction import clap_audio, clap_mel, clip_vision, decode
from extraction.extractor import FeatureExtractor, extract_videos, feature_folder, model_inputs
from recipes.releases import FEATURE_SETS
from valor_release_fixtures import valor_state_dict
from video_fixtures import write_test_video

pytestmark = pytest.mark.e2e
av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """A 3-s video (one window) through the extractor with random CLAP and CLIP networks."""
    folder = tmp_path_factory.mktemp("modern")
    video = str(folder / "clip.mp4")
    write_test_video(video, 3)
    extractor = FeatureExtractor(kinds=("clap", "clip"), random_weights=True)
    entries = extract_videos(extractor, [video], str(folder / "out"), progress=False, log=lambda text: None)
    return folder, video, extractor, entries


def test_features_land_in_valors_layout_with_their_records(extracted):
    folder, _, _, entries = extracted
    out = folder / "out"
    clap = np.load(out / "CLAP" / "features" / "clip.npy")
    clip = np.load(out / "CLIP" / "features" / "clip.npy")
    assert clap.shape == (64, 768) and clap.dtype == np.float32
    assert clip.shape == (10, 768) and np.allclose(np.linalg.norm(clip, axis=1), 1, atol=1e-5)
    with open(out / "CLIP" / "features" / "extraction.json") as handle:
        record = json.load(handle)
    assert record["network"] == "CLIP ViT-L/14 (vision tower and projection)" and record["weights"] == "random"
    assert record["rows"] == [10, 768] and "round(linspace(0, 79, 10))" in record["settings"]["frame_choice"]
    assert entries["clip"]["kinds"] == ["clap", "clip"]


def test_the_pipeline_computes_what_the_standalone_networks_compute(extracted):
    folder, video, extractor, _ = extracted
    info = decode.probe(video)
    # CLAP: the window's 480,000 samples at 48 kHz (zeros past the 3-s track), VALOR's preprocessing
    wave = decode.audio_window(decode.read_audio(info, clap_mel.SAMPLE_RATE), 0, 10, clap_mel.SAMPLE_RATE)
    expected = clap_audio.clap_feature_maps(extractor.networks["clap"], [wave])[0]
    np.testing.assert_allclose(np.load(folder / "out" / "CLAP" / "features" / "clip.npy"), expected, atol=1e-5)
    # CLIP: the 10 of the window's 80 grid frames (the last frame held past 3 s)
    frames = decode.grid_frames(info, range(80), 8, lambda image: image)
    expected = clip_vision.clip_window_features(extractor.networks["clip"], [frames[k] for k in range(80)])
    np.testing.assert_allclose(np.load(folder / "out" / "CLIP" / "features" / "clip.npy"), expected, atol=1e-5)


def test_the_kinds_of_a_feature_set_make_one_input_each():
    assert model_inputs(("clap", "clip", "snippets")) == {"audio": "clap", "frames": "clip", "snippets": "snippets"}
    assert model_inputs(FEATURE_SETS["clip_clap"].values()) == FEATURE_SETS["clip_clap"]
    with pytest.raises(Exception, match="--kinds audio and clap both make the audio input"):
        model_inputs(("audio", "clap"))
    assert feature_folder("root", "clap") == os.path.join("root", "CLAP", "features")


def test_parse_video_extracts_what_a_released_model_was_trained_on(extracted, tmp_path):
    folder, video, _, _ = extracted
    source = tmp_path / "release" / "model_VALOR++"
    source.mkdir(parents=True)
    torch.save(valor_state_dict(5, 256, 4, 768, 768), source / "checkpoint_best.pt")
    models = tmp_path / "models"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "download_models.py"), "VALOR++", "--from",
                    str(tmp_path / "release"), "--models_dir", str(models)], check=True, capture_output=True, env=env)
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "parse_video.py"), video, "--checkpoint",
                             str(models / "model_VALOR++" / "checkpoint_best.pt"), "--random_weights",
                             "--out_dir", str(tmp_path / "parsed"), "--progress", "off", "--no_timeline"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "parsed" / "clip" / "clip_events.json") as handle:
        parsed = json.load(handle)
    assert parsed["model"] == "VALOR++, released (VALOR++ (Lai et al., NeurIPS 2023))"
    assert parsed["model_source"]["release"] == "VALOR++" and len(parsed["model_source"]["sha256"]) == 64
    assert {feeds: entry["kind"] for feeds, entry in parsed["features"].items()} == FEATURE_SETS["clip_clap"]
    assert sorted(os.listdir(tmp_path / "parsed" / "features")) == ["CLAP", "CLIP", "feats", "videos.jsonl"]


def test_parse_video_with_hans_release_extracts_the_official_kinds(extracted, tmp_path):
    """HAN's MMIL_Net.pt (seeded weights in its layout, unused encoders included) installed by
    the download script, then a synthesized mp4 parsed by name: VGGish / ResNet152 / R(2+1)D."""
    from nets import build_han, default_feature_dims
    from nets.convert import han_to_release
    folder, video, _, _ = extracted
    source, models = tmp_path / "release", tmp_path / "models"
    source.mkdir()
    torch.manual_seed(1)
    torch.save(han_to_release(build_han(default_feature_dims()).state_dict(), with_unused_encoders=True),
               source / "MMIL_Net.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the seeded stand-in is not HAN's published file: the script checks HAN's git blob id
    refused = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "download_models.py"), "HAN",
                              "--from", str(source), "--models_dir", str(models)], capture_output=True, text=True,
                             env=env)
    assert refused.returncode == 2 and "MMIL_Net.pt" in refused.stderr
    models.mkdir(exist_ok=True)
    shutil.copy(source / "MMIL_Net.pt", models / "MMIL_Net.pt")
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "parse_video.py"), video, "--checkpoint",
                             str(models / "MMIL_Net.pt"), "--random_weights", "--out_dir", str(tmp_path / "parsed"),
                             "--progress", "off", "--no_timeline"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "parsed" / "clip" / "clip_events.json") as handle:
        parsed = json.load(handle)
    assert parsed["model"].startswith("HAN, released")
    assert {feeds: entry["kind"] for feeds, entry in parsed["features"].items()} == FEATURE_SETS["official"]
    assert sorted(os.listdir(tmp_path / "parsed" / "features")) == ["feats", "videos.jsonl"]


def test_a_run_of_this_project_extracts_the_kinds_its_checkpoint_records():
    import parse_video
    formats = {"audio": "(64, 768): CLAP feature maps", "frames": "(10, 768): one CLIP frame per segment",
               "snippets": "(10, 512): one vector per segment"}
    assert parse_video.trained_inputs({"model_config": {"feature_formats": formats}}) == FEATURE_SETS["clip_clap"]
    assert parse_video.trained_inputs({"model_config": {}}) == FEATURE_SETS["official"]
    with pytest.raises(Exception, match=r"trained on audio features \(10, 512\)"):
        parse_video.trained_inputs({"model_config": {"feature_formats": {"audio": "(10, 512): one vector"}}})
