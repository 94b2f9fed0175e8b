"""docs/OWN_VIDEOS.md's path for your own labelled clips, step by step on synthesized mp4 files:
make_own_dataset.py -> extract_features.py -> train -> test -> parse_video.py, with own class
names and features named by filename. The feature networks are stand-ins of the published output
sizes (the real ones are tested in test_extraction.py and take ~20 s a clip here); everything else
runs as a user runs it."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from torch import nn

from conftest import REPO_ROOT, main_fails, run_main
from extraction import vggish, visual_nets
from utils import checkpoint

pytestmark = pytest.mark.e2e
pytest.importorskip("av")
from video_fixtures import write_test_video  # noqa: E402  (needs PyAV)

OWN_CLASSES = ("bark", "knock", "piano", "rain", "siren", "speech", "engine")
NUM_CLIPS = 12
HAND_LABELLED = 4


class StandIn(nn.Module):
    """A feature network of the published output size (VGGish 128, ResNet152 2048, R(2+1)D 512)
    that reads its whole input: pooled to 16 numbers, then a linear map."""

    def __init__(self, dim):
        super().__init__()
        self.project = nn.Linear(16, dim)

    def forward(self, inputs):
        pooled = nn.functional.adaptive_avg_pool1d(inputs.float().flatten(1)[:, None, :], 16)[:, 0]
        return self.project(pooled)

    features = forward


@pytest.fixture
def stand_in_networks(monkeypatch):
    monkeypatch.setattr(vggish, "VGGish", lambda: StandIn(128))
    monkeypatch.setattr(visual_nets, "resnet152", lambda: StandIn(2048))
    monkeypatch.setattr(visual_nets, "r2plus1d_18", lambda: StandIn(512))


def write_own_files(folder, rng):
    """Clips clip_00.mp4 ... (10 s) with weak labels of OWN_CLASSES, the first HAND_LABELLED also
    with segment truth; returns (clips folder, labels csv, eval audio csv, eval visual csv)."""
    clips = folder / "clips"
    clips.mkdir()
    labels, audio_rows, visual_rows = ["filename\tevent_labels"], [], []
    for index in range(NUM_CLIPS):
        name = f"own_clip_number_{index:02d}"
        write_test_video(clips / f"{name}.mp4", 10, fps=8, size=(64, 48), audio_codec="pcm_s16le")
        # every class is some clip's, the clip's own first
        present = sorted({index % len(OWN_CLASSES), int(rng.integers(len(OWN_CLASSES)))})
        labels.append(f"{name}\t{','.join(OWN_CLASSES[c] for c in present)}")
        if index < HAND_LABELLED:
            for c in present:
                onset = int(rng.integers(0, 5))
                audio_rows.append(f"{name}\t{onset}\t{onset + 5}\t{OWN_CLASSES[c]}")
                visual_rows.append(f"{name}\t0\t{int(rng.integers(3, 11))}\t{OWN_CLASSES[c]}")
    header = "filename\tonset\toffset\tevent_labels"
    paths = []
    for name, lines in (("labels.csv", labels), ("eval_audio.csv", [header, *audio_rows]),
                        ("eval_visual.csv", [header, *visual_rows])):
        (folder / name).write_text("\n".join(lines) + "\n")
        paths.append(str(folder / name))
    return clips, *paths


def test_own_clips_go_from_videos_to_a_parse_with_their_class_names(tmp_path, stand_in_networks, capsys):
    from parse_video import get_args_parser as parse_parser
    from parse_video import main as parse_main
    from scripts.extract_features import get_args_parser as extract_parser
    from scripts.extract_features import main as extract_main
    clips, labels, eval_audio, eval_visual = write_own_files(tmp_path, np.random.default_rng(0))
    data = tmp_path / "my_data"
    made = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "make_own_dataset.py"), "--labels",
                           labels, "--eval_audio", eval_audio, "--eval_visual", eval_visual, "--out_dir", str(data)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert "8 train, 2 val, 2 test clips of 7 classes" in made.stdout
    # sorted names of the labels, as no --classes was given
    assert (data / "classes.txt").read_text().split() == sorted(OWN_CLASSES)

    extract_main(extract_parser().parse_args([str(clips), "--out_dir", str(data), "--random_weights",
                                              "--progress", "off"]))
    assert "train on these features with --feature_names filename" in capsys.readouterr().err
    assert len(os.listdir(data / "feats" / "res152")) == NUM_CLIPS + 1   # and its extraction.json
    assert not (data / "CLIP").exists() and not (data / "CLAP").exists()   # LLP's three kinds by default

    run = tmp_path / "runs"
    flags = ["--llp_root", str(data), "--classes", str(data / "classes.txt"), "--feature_names", "filename",
             "--allow_random_weight_features", "--model_save_dir", str(run), "--device", "cpu", "--progress", "off"]
    run_main(flags + ["--epochs", "2", "--batch-size", "4"])
    assert checkpoint.load(checkpoint.best_path(str(run), "DHHN", "overall"))["model_config"]["classes"] == \
        sorted(OWN_CLASSES)
    capsys.readouterr()
    summary = run_main(flags + ["--mode", "test"])
    out = capsys.readouterr().out
    assert summary["num_videos"] == 2
    per_class = out[out.index("test: per-class F1"):].splitlines()[2:2 + len(OWN_CLASSES)]
    assert [line.split()[0] for line in per_class] == sorted(OWN_CLASSES)

    # by LLP's rule (features found by the first 11 characters) the clips would be one video
    err = main_fails([flag for flag in flags if flag not in ("--feature_names", "filename")] + ["--mode", "test"],
                     capsys, listing=True)
    assert "the splits are not disjoint" in err and "YouTube id(s)" in err and "'own_clip_nu'" in err

    new_clip = tmp_path / "new_clip.mp4"
    write_test_video(new_clip, 12, fps=8, size=(64, 48), audio_codec="pcm_s16le")
    parse_main(parse_parser().parse_args([str(new_clip), "--checkpoint", f"{run}/DHHN", "--random_weights",
                                          "--out_dir", str(tmp_path / "parsed"), "--progress", "off"]))
    with open(tmp_path / "parsed" / "new_clip" / "new_clip_events.json") as handle:
        parsed = json.load(handle)
    assert {event["class"] for event in parsed["events"]} <= set(OWN_CLASSES)
    assert parsed["segments"] == 12
    assert (tmp_path / "parsed" / "new_clip" / "new_clip_timeline.png").stat().st_size > 0


def test_a_hand_labelled_clip_missing_from_the_labels_is_named(tmp_path):
    (tmp_path / "labels.csv").write_text("filename\tevent_labels\na\tdog\nb\tcat\nc\tdog\n")
    (tmp_path / "eval.csv").write_text("filename\tonset\toffset\tevent_labels\na\t0\t3\tdog\nzz\t1\t2\tcat\n")
    done = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "make_own_dataset.py"), "--labels",
                           str(tmp_path / "labels.csv"), "--eval_audio", str(tmp_path / "eval.csv"), "--eval_visual",
                           str(tmp_path / "eval.csv"), "--out_dir", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == "error: --eval_audio: 1 clip(s) are not in --labels (e.g. zz)\n"


def test_feature_names_by_filename_compare_the_splits_by_filename(tmp_path):
    from dataloader import LLPPaths, split_overlaps
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    for name, clips in (("AVVP_train.csv", ["long_clip_name_1"]), ("AVVP_val_pd.csv", ["long_clip_name_2"]),
                        ("AVVP_test_pd.csv", ["long_clip_name_3"])):
        (root / "data" / name).write_text("filename\tevent_labels\n" + "".join(f"{c}\tdog\n" for c in clips))
    paths = LLPPaths.official(root)
    assert len(split_overlaps(paths)) == 3   # by LLP's rule they share the id 'long_clip_n'
    assert split_overlaps(paths, by_id=False) == []
