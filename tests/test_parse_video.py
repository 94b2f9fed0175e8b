"""parse_video.py end to end: a trained DHHN (the synthetic run of conftest) parses synthetic mp4
files; stitched events agree with per-window predictions; errors stop before any work; the real
networks run once, with random weights."""
import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("av", reason='the video tests need PyAV: pip install -e ".[video]"')

import engine
import parse_video
from avvp_data.llp import CLASSES
from avvp_data.synthetic_llp import generate_synthetic_llp
from conftest import data_flags, load_test_split, run_main, train_flags
from dataloader import LLPPaths, load_features
from extraction import extractor as extractor_module
from extraction import records
from extraction.extractor import OFFICIAL_KINDS, feature_folder
from extraction.windows import Window
from extraction_stubs import StubExtractor
from modes.evaluate import assemble_rows
from recipes import RECIPES
from utils.eval_metrics import segment_predictions
from video_fixtures import write_corrupt_file, write_test_video


def parse(argv):
    return parse_video.main(parse_video.get_args_parser().parse_args(argv))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {name: write_test_video(folder / f"{name}.mp4", seconds, **options)["path"]
            for name, seconds, options in [("long", 25, {}), ("short", 3, {}), ("blip", 1, {}),
                                           ("mute", 4, {"audio": False})]}


@pytest.fixture
def stub_networks(monkeypatch):
    monkeypatch.setattr(extractor_module, "FeatureExtractor", StubExtractor)
    StubExtractor.calls = 0


class ReplayExtractor(StubExtractor):
    """Decodes and plans windows as the real extractor does, then hands each window the features
    of a synthetic LLP test video (the next one each time), so the trained model finds events."""
    source = None
    served = 0

    def extract(self, info, on_window=None):
        windows, _ = super().extract(info, on_window)
        picks = [(ReplayExtractor.served + i) % self.source.num_videos for i in range(len(windows))]
        ReplayExtractor.served += len(windows)
        return windows, {kind: getattr(self.source, kind)[picks] for kind in OFFICIAL_KINDS}


@pytest.fixture
def replayed_features(monkeypatch, synthetic_root):
    monkeypatch.setattr(extractor_module, "FeatureExtractor", ReplayExtractor)
    ReplayExtractor.source = load_test_split(synthetic_root)
    StubExtractor.calls = 0


def test_parsed_timelines_agree_with_the_windows(trained_run, clips, replayed_features, tmp_path, capsys):
    save_dir, _ = trained_run
    out = tmp_path / "parsed"
    argv = [clips["long"], clips["short"], "--checkpoint", os.path.join(save_dir, "DHHN"), "--out_dir", str(out),
            "--random_weights", "--device", "cpu", "--progress", "off"]
    entries = parse(argv)
    assert StubExtractor.calls == 2
    err = capsys.readouterr().err
    assert "trained on the synthetic LLP" in err and "RANDOM weights" in err
    with open(out / "long" / "long_events.json") as f:
        parsed = json.load(f)
    assert parsed["segments"] == 25 and parsed["smoke_test"] is True and len(parsed["warnings"]) == 2
    assert parsed["model"] == "DHHN dual (best-audio + best-visual)" and len(parsed["windows"]) == 3
    for name in ("long", "short"):
        assert {path.name for path in (out / name).iterdir()} == {f"{name}_events.json", f"{name}_audio.csv",
                                                                  f"{name}_visual.csv", f"{name}_timeline.png"}

    heard, seen = decisions_by_hand(argv, entries["long"], out / "features", "dhhn", "modality")
    assert events_as_seconds(parsed, "audio") == heard and events_as_seconds(parsed, "visual") == seen
    assert len(heard) > 5 and len(seen) > 5   # the check compared something

    # a second run reuses the cached features
    parse(argv)
    assert StubExtractor.calls == 2


def events_as_seconds(parsed, modality):
    """{(class, second)} covered by the parsed events of one modality."""
    return {(event["class"], second) for event in parsed["events"] if event["modality"] == modality
            for second in range(event["onset"], event["offset"])}


def decisions_by_hand(argv, entry, features_dir, model_name, gating):
    """({(class, second)} heard, seen): the video's windows through the model as evaluation decides
    them (utils.eval_metrics.segment_predictions), each second from the first window covering it."""
    ids = entry["ids"]
    folders = {kind: feature_folder(str(features_dir), kind) for kind in OFFICIAL_KINDS}
    features, layout = load_features(folders, ids, exact_names=True)
    split = parse_video.LLPSplit(name="videos", filenames=ids, labels=np.zeros((len(ids), 25), np.float32),
                                 feature_layout=layout, **features)
    model_args, *_ = parse_video.model_arguments(parse_video.get_args_parser().parse_args(argv))
    model = next(iter(assemble_rows(RECIPES[model_name], model_args, split, torch.device("cpu")).values()))
    outputs = engine.predict(model, parse_video.to_device(model_args, split, torch.device("cpu")))
    predictions = [pred.numpy() for pred in segment_predictions(outputs, gating)]
    decided = (set(), set())
    for w, window in enumerate(Window(**record) for record in entry["windows"]):
        for position in range(window.keep_from, window.keep_to):
            for found, pred in zip(decided, predictions):
                found.update((CLASSES[cls], window.start + position) for cls in np.flatnonzero(pred[w, :, position]))
    return decided


def test_a_han_run_parses_with_its_global_gate(synthetic_root, clips, replayed_features, tmp_path):
    save_dir = tmp_path / "han"
    run_main(train_flags(synthetic_root, save_dir, "--mode", "train", "--model", "han", "--epochs", "4"))
    out = tmp_path / "parsed"
    argv = [clips["long"], "--checkpoint", os.path.join(save_dir, "DHHN"), "--out_dir", str(out),
            "--random_weights", "--device", "cpu", "--progress", "off"]
    entries = parse(argv)
    with open(out / "long" / "long_events.json") as f:
        parsed = json.load(f)
    assert parsed["model_name"] == "han" and parsed["model"].startswith("HAN")
    heard, seen = decisions_by_hand(argv, entries["long"], out / "features", "han", "global")
    assert events_as_seconds(parsed, "audio") == heard and events_as_seconds(parsed, "visual") == seen
    assert len(heard) > 5 and len(seen) > 5   # the check compared something


def test_bad_input_stops_before_any_extraction(trained_run, clips, stub_networks, tmp_path, capsys):
    save_dir, _ = trained_run
    out = tmp_path / "parsed"
    base = ["--out_dir", str(out), "--random_weights", "--device", "cpu", "--progress", "off"]
    cases = [([str(tmp_path / "absent.mp4"), "--checkpoint", os.path.join(save_dir, "DHHN")], "absent.mp4"),
             ([clips["short"], "--checkpoint", os.path.join(save_dir, "NOPE")], "no checkpoint files NOPE_best_*.pt"),
             ([clips["short"], clips["mute"], "--checkpoint", os.path.join(save_dir, "DHHN")], "no audio track")]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            parse(argv + base)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
        assert StubExtractor.calls == 0 and not out.exists()


def test_every_bad_video_is_named_at_once_and_nothing_is_written(trained_run, clips, stub_networks, tmp_path,
                                                                 capsys):
    save_dir, _ = trained_run
    blink = write_test_video(tmp_path / "blink.mp4", 0.5)["path"]
    corrupt = write_corrupt_file(tmp_path / "corrupt.mp4")
    out = tmp_path / "parsed"
    with pytest.raises(SystemExit) as exit_info:
        parse([clips["short"], clips["mute"], blink, corrupt, str(tmp_path / "absent.mp4"), "--checkpoint",
               os.path.join(save_dir, "DHHN"), "--out_dir", str(out), "--random_weights", "--device", "cpu",
               "--progress", "off"])
    assert exit_info.value.code == 2
    first, *lines = capsys.readouterr().err.splitlines()
    assert first == "error: 4 problem(s) among 5 video(s); nothing was extracted (fix or leave out each one):"
    assert [line.split(": ", 1)[0] for line in lines] == [f"  {path}" for path in (
        clips["mute"], blink, corrupt, str(tmp_path / "absent.mp4"))]
    assert "no audio track" in lines[0] and "too short" in lines[1] and "cannot be read as a video" in lines[2]
    assert StubExtractor.calls == 0 and not out.exists()


def test_real_networks_with_random_weights(trained_run, clips, tmp_path, capsys):
    """The whole path with the real VGGish, ResNet152 and R(2+1)D-18 (a 1-s clip: the held frames of
    the padding run once, so this stays fast)."""
    save_dir, _ = trained_run
    out = tmp_path / "parsed"
    parse([clips["blip"], "--checkpoint", os.path.join(save_dir, "DHHN"), "--out_dir", str(out),
           "--random_weights", "--device", "cpu", "--progress", "off"])
    shapes = {kind: np.load(os.path.join(feature_folder(str(out / "features"), kind), "blip.npy")).shape
              for kind in OFFICIAL_KINDS}
    assert shapes == {"audio": (10, 128), "frames": (80, 2048), "snippets": (10, 512)}
    frames = np.load(os.path.join(feature_folder(str(out / "features"), "frames"), "blip.npy"))
    assert np.isfinite(frames).all() and np.abs(frames).sum() > 0
    np.testing.assert_array_equal(frames[9:], np.broadcast_to(frames[8], frames[9:].shape))   # the held frame
    record = records.read_record(feature_folder(str(out / "features"), "snippets"))
    assert record["random_weights"] is True and record["weights"] == "random" and record["network"] == "R(2+1)D-18"
    with open(out / "blip" / "blip_events.json") as f:
        assert json.load(f)["segments"] == 1


def test_training_refuses_features_of_random_weights(tmp_path, capsys):
    root = tmp_path / "llp"
    generate_synthetic_llp(str(root), n_train=16, n_val=8, n_test=8, seed=3)
    paths = LLPPaths.official(root)
    records.claim_folder(paths.audio_dir, {"kind": "audio", "network": "VGGish", "weights": "random",
                                           "random_weights": True, "settings": {}})
    train = data_flags(root) + ["--mode", "train", "--epochs", "1", "--model_save_dir", str(tmp_path / "models"),
                                "--device", "cpu", "--batch-size", "16"]
    with pytest.raises(SystemExit) as exit_info:
        run_main(train)
    assert exit_info.value.code == 2
    assert "random weights" in capsys.readouterr().err and not (tmp_path / "models" / "DHHN_last.pt").exists()
    run_main(train + ["--allow_random_weight_features"])
    assert (tmp_path / "models" / "DHHN_last.pt").exists()


def test_features_made_otherwise_than_the_training_features_are_refused(trained_run, clips, stub_networks, tmp_path,
                                                                       monkeypatch, capsys):
    save_dir, _ = trained_run
    trained_on = str(tmp_path / "trained_vggish")
    record = StubExtractor(kinds=("audio",), random_weights=True, vggish_postprocess=False).record("audio")
    records.claim_folder(trained_on, dict(record, settings=dict(record["settings"], postprocess="AudioSet PCA")))
    monkeypatch.setattr(parse_video, "training_folders", lambda content: {"audio": trained_on})
    with pytest.raises(SystemExit):
        parse([clips["short"], "--checkpoint", os.path.join(save_dir, "DHHN"), "--out_dir", str(tmp_path / "out"),
               "--random_weights", "--device", "cpu", "--progress", "off"])
    err = capsys.readouterr().err
    assert "trained on features extracted otherwise" in err and "postprocess was 'AudioSet PCA'" in err
    assert StubExtractor.calls == 0
