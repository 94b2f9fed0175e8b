"""From video files to features: windows, time alignment, errors naming the file, records, resume.

The networks are replaced by stubs that keep what the tests can predict from the synthetic
videos (tests/video_fixtures.py): the mean colour of each frame and the loudest mel band of
each audio example. The real networks run in tests/test_parse_video.py.
"""
import json
import os
import re

import numpy as np
import pytest
import torch

pytest.importorskip("av", reason='the video tests need PyAV: pip install -e ".[video]"')

from extraction import decode, records, vggish, weights
from extraction import extractor as extractor_module
from extraction.extractor import FRAME_RATE, FeatureExtractor, extract_videos, feature_folder
from extraction_stubs import StubExtractor
from utils.errors import UsageError
from video_fixtures import SECOND_COLOURS, TONE_HZ, write_corrupt_file, write_test_video, write_truncated_video


def nearest_colour(rgb):
    return int(np.argmin([np.abs(np.subtract(rgb, colour)).sum() for colour in SECOND_COLOURS]))


def tone_band(hz):
    """The mel band that a tone of `hz` fills most (the largest weight of its FFT bin)."""
    fft_bin = int(round(hz * vggish.FFT_LENGTH / vggish.SAMPLE_RATE))
    return int(np.argmax(vggish.mel_matrix()[fft_bin]))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return {name: write_test_video(folder / f"{name}.mp4", seconds, **options)
            for name, seconds, options in [("three", 3, {}), ("ten", 10, {}), ("long", 25, {}),
                                           ("mute", 10, {"audio": False}), ("blink", 0.5, {}),
                                           ("vfr", 10, {"variable_frame_rate": True})]}


def test_a_25_s_video_is_three_windows_aligned_with_time(videos, tmp_path):
    extractor = StubExtractor(random_weights=True)
    entries = extract_videos(extractor, [videos["long"]["path"]], str(tmp_path), progress=False)
    entry = entries["long"]
    assert entry["ids"] == ["long_0_10", "long_10_20", "long_15_25"]
    assert [w["start"] for w in entry["windows"]] == [0, 10, 15]
    for fid, start in zip(entry["ids"], (0, 10, 15)):
        frames = np.load(os.path.join(feature_folder(str(tmp_path), "frames"), f"{fid}.npy"))
        snippets = np.load(os.path.join(feature_folder(str(tmp_path), "snippets"), f"{fid}.npy"))
        audio = np.load(os.path.join(feature_folder(str(tmp_path), "audio"), f"{fid}.npy"))
        assert frames.shape == (80, 2048) and snippets.shape == (10, 512) and audio.shape == (10, 128)
        assert frames.dtype == snippets.dtype == audio.dtype == np.float32
        # frame k shows time start + k / 8: the background of that second
        seconds = [(start + k // FRAME_RATE) % 10 for k in range(80)]
        assert [nearest_colour(frames[k, :3]) for k in range(80)] == seconds
        # clip s holds the 8 frames of second start + s, in order
        for segment in range(10):
            per_frame = snippets[segment, 3:27].reshape(8, 3)
            assert {nearest_colour(rgb) for rgb in per_frame} == {(start + segment) % 10}
        # example s is the audio of second start + s
        assert [int(np.argmax(audio[s, :64])) for s in range(10)] == [tone_band(TONE_HZ[(start + s) % 10])
                                                                       for s in range(10)]


def test_windows_run_one_at_a_time_and_the_overlap_runs_once(videos, tmp_path, monkeypatch):
    """A 25-s video: windows 0-10, 10-20 and 15-25 s; the last one's first 5 s are the window
    before's frames and clips, so 200 frames and 25 clips go through the networks, not 240 and 30."""
    inputs = {kind: [] for kind in ("audio", "frames", "snippets")}
    run = FeatureExtractor._run

    def counted(self, kind, items, to_input=torch.from_numpy):
        inputs[kind].append(len(items))
        return run(self, kind, items, to_input)
    monkeypatch.setattr(FeatureExtractor, "_run", counted)
    extract_videos(StubExtractor(random_weights=True), [videos["long"]["path"]], str(tmp_path), progress=False)
    assert {kind: sum(sizes) for kind, sizes in inputs.items()} == {"audio": 30, "frames": 200, "snippets": 25}
    assert inputs["audio"] == [10, 10, 10]   # window by window


def test_without_a_progress_bar_lines_say_each_window_and_each_video(videos, tmp_path, monkeypatch):
    """Output to a file (nohup, SLURM): a line per finished window (at most every
    PROGRESS_LINE_SECONDS, 0 here) but the last, then one per video with its time."""
    monkeypatch.setattr(extractor_module, "PROGRESS_LINE_SECONDS", 0, raising=False)
    lines = []
    paths = [videos["long"]["path"], videos["three"]["path"]]
    extract_videos(StubExtractor(random_weights=True), paths, str(tmp_path), progress=False, log=lines.append)
    long, three = paths
    patterns = [rf"{long}: window 1/3 \(0-10 s\) done, \d+\.\d s",
                rf"{long}: window 2/3 \(10-20 s\) done, \d+\.\d s",
                rf"{long}: 25\.00 s -> 25 segment\(s\) in 3 window\(s\); the last window starts at 15 s and overlaps "
                rf"the one before by 5 s; done in \d+\.\d s \(video 1/2\)",
                rf"{three}: 3\.00 s -> 3 segment\(s\) in 1 window\(s\); the window is padded by 7 s \(silence, last "
                rf"frame held\), not reported; done in \d+\.\d s \(video 2/2\)"]
    assert len(lines) == len(patterns)
    for line, pattern in zip(lines, patterns):
        assert re.fullmatch(pattern, line), line
    # at most one line every PROGRESS_LINE_SECONDS: windows quicker than that are not all said
    monkeypatch.setattr(extractor_module, "PROGRESS_LINE_SECONDS", 3600, raising=False)
    lines.clear()
    os.utime(long)   # extracted again
    extract_videos(StubExtractor(random_weights=True), [long], str(tmp_path), progress=False, log=lines.append)
    assert [line.split(": ", 1)[1].split(";")[0] for line in lines] == [
        "25.00 s -> 25 segment(s) in 3 window(s)"]
    # with a progress bar (a terminal) the bar says it, no lines
    lines.clear()
    os.utime(long)
    extract_videos(StubExtractor(random_weights=True), [long], str(tmp_path), progress=True, log=lines.append)
    assert lines == [f"{long}: 25.00 s -> 25 segment(s) in 3 window(s); the last window starts at 15 s and overlaps "
                     "the one before by 5 s"]


def test_a_3_s_video_is_one_window_padded_with_silence_and_the_last_frame(videos, tmp_path):
    entries = extract_videos(StubExtractor(random_weights=True), [videos["three"]["path"]], str(tmp_path),
                             progress=False)
    assert entries["three"]["ids"] == ["three"] and entries["three"]["windows"][0]["padded"] == 7
    assert "padded by 7 s" in entries["three"]["plan"]
    frames = np.load(os.path.join(feature_folder(str(tmp_path), "frames"), "three.npy"))
    audio = np.load(os.path.join(feature_folder(str(tmp_path), "audio"), "three.npy"))
    assert [nearest_colour(frames[k, :3]) for k in range(24)] == [k // 8 for k in range(24)]
    assert {nearest_colour(frames[k, :3]) for k in range(24, 80)} == {2}      # the last frame held
    # VGGish examples are 0.96 s long, every 0.96 s (as published): example 3 (2.88-3.855 s) still
    # hears the last 0.12 s of the tone, examples 4-9 lie wholly in the padding: silence
    np.testing.assert_allclose(audio[4:, :64], np.log(vggish.LOG_OFFSET), rtol=1e-6)
    assert int(np.argmax(audio[3, :64])) == int(np.argmax(audio[2, :64])) == tone_band(TONE_HZ[2])


def test_probe_reads_the_stream_without_decoding(videos):
    info = decode.probe(videos["ten"]["path"])
    assert info.duration == pytest.approx(10.0, abs=0.05)
    assert info.frame_rate == pytest.approx(25.0) and info.num_frames == 250
    assert info.has_audio and info.audio_duration == pytest.approx(10.0, abs=0.05)
    assert (info.width, info.height) == (160, 120) and not info.variable_frame_rate
    assert not decode.probe(videos["mute"]["path"]).has_audio
    assert decode.probe(videos["vfr"]["path"]).variable_frame_rate


def bad_videos(videos, folder):
    """{path: how the error's line of it goes on after the path} of one broken video of each kind, in `folder`."""
    cut = write_truncated_video(folder / "cut.mp4", seconds=3, keep_fraction=0.6)["path"]
    lost = write_truncated_video(folder / "lost_index.mp4", seconds=3, faststart=False)["path"]
    quiet_blink = write_test_video(folder / "quiet_blink.mp4", 0.5, audio=False)["path"]
    refused = {
        videos["mute"]["path"]: "no audio track; the audio features (and parsing) need one",
        videos["blink"]["path"]: "0.48 s is too short; at least one 1-s segment is needed",
        quiet_blink: "no audio track; the audio features (and parsing) need one; 0.48 s is too short; at least "
                     "one 1-s segment is needed",
        videos["vfr"]["path"]: "variable frame rate (frame intervals from 20.0 ms to 1000.0 ms); re-encode at a "
                               "constant rate (e.g. ffmpeg -i IN -vf fps=25 OUT.mp4) or pass "
                               "--allow_variable_frame_rate to sample it by time",
        write_corrupt_file(folder / "corrupt.mp4"): "cannot be read as a video (",
        lost: "cannot be read as a video (",
        str(folder / "absent.mp4"): "no such file",
    }
    # it opens and demuxes up to the cut (its index comes first): only decoding it would fail
    refused[cut] = "truncated or damaged (a cut packet at "
    return refused


def test_every_bad_video_is_listed_in_one_error_before_any_network_runs_and_nothing_is_written(videos, tmp_path):
    refused = bad_videos(videos, tmp_path)
    paths = [videos["ten"]["path"], *refused, videos["three"]["path"]]
    StubExtractor.calls = 0
    out = tmp_path / "out"
    with pytest.raises(decode.VideoInputError) as error:
        extract_videos(StubExtractor(random_weights=True), paths, str(out), progress=False)
    first, *lines = str(error.value).splitlines()
    assert first == ("8 problem(s) among 10 video(s); nothing was extracted (fix or leave out each one):")
    assert len(lines) == len(refused)
    for line, (path, problem) in zip(lines, refused.items()):
        assert line.startswith(f"  {path}: {problem}")
    assert StubExtractor.calls == 0 and not out.exists()
    # a video without sound is fine when no audio features are asked for
    entries = extract_videos(StubExtractor(kinds=("frames",), random_weights=True), [videos["mute"]["path"]],
                             str(tmp_path / "frames_only"), progress=False)
    assert entries["mute"]["kinds"] == ["frames"]


def test_a_feature_folder_made_otherwise_is_refused_before_any_folder_is_made(videos, tmp_path):
    root = tmp_path / "out"
    records.claim_folder(feature_folder(str(root), "snippets"), StubExtractor(random_weights=False).record("snippets"))
    with pytest.raises(UsageError, match="made otherwise"):
        extract_videos(StubExtractor(random_weights=True), [videos["ten"]["path"]], str(root), progress=False)
    assert os.listdir(root / "feats") == ["r2plus1d_18"]   # the audio and frames folders come before it


def test_variable_frame_rate_is_sampled_by_time_when_allowed(videos, tmp_path):
    entries = extract_videos(StubExtractor(kinds=("frames",), random_weights=True), [videos["vfr"]["path"]],
                             str(tmp_path), allow_variable_frame_rate=True, progress=False)
    frames = np.load(os.path.join(feature_folder(str(tmp_path), "frames"), f"{entries['vfr']['ids'][0]}.npy"))
    pts = np.array(videos["vfr"]["frame_pts"])
    for k in range(0, 80, 5):   # the frame shown at k / 8 s is the last one presented by then
        shown = pts[pts <= k / FRAME_RATE + 1e-6].max()
        assert nearest_colour(frames[k, :3]) == int(shown) % 10


def test_records_describe_the_settings_and_a_rerun_resumes(videos, tmp_path):
    root = str(tmp_path)
    paths = [videos["ten"]["path"], videos["three"]["path"]]
    StubExtractor.calls = 0
    extract_videos(StubExtractor(random_weights=True), paths, root, progress=False)
    assert StubExtractor.calls == 2
    record = records.read_record(feature_folder(root, "frames"))
    assert record["network"] == "ResNet152" and record["random_weights"] is True
    assert record["settings"]["frame_rate"] == 8 and record["settings"]["crop"] == "centre 224 x 224"
    assert records.read_record(feature_folder(root, "audio"))["settings"]["postprocess"] == "none (raw embedding)"
    with open(os.path.join(root, records.VIDEOS_FILE)) as f:
        lines = [json.loads(line) for line in f]
    assert [line["video"] for line in lines] == ["ten", "three"]
    # a rerun skips finished videos; a changed file is extracted again
    extract_videos(StubExtractor(random_weights=True), paths, root, progress=False)
    assert StubExtractor.calls == 2
    os.utime(videos["three"]["path"])
    extract_videos(StubExtractor(random_weights=True), paths, root, progress=False)
    assert StubExtractor.calls == 3
    # an interrupted line is skipped, so that video is done again
    with open(os.path.join(root, records.VIDEOS_FILE), "a") as f:
        f.write('{"video": "cut sho')
    assert set(records.read_videos(root)) == {"ten", "three"}
    # other settings never share a folder
    with pytest.raises(UsageError, match="made otherwise"):
        extract_videos(StubExtractor(random_weights=False), paths, root, progress=False)


def test_two_videos_with_one_name_are_refused(videos, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    twin = write_test_video(other / "ten.mp4", 2)["path"]
    with pytest.raises(decode.VideoInputError, match=f"{videos['ten']['path']} and {twin} would write the same "
                                                     r"features \(ten\); rename one"):
        extract_videos(StubExtractor(random_weights=True), [videos["ten"]["path"], twin], str(tmp_path / "out"),
                       progress=False)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- weight files

def test_weight_files_are_found_offline_and_checked(tmp_path, monkeypatch):
    state = {"layer.weight": torch.arange(6.0).reshape(2, 3)}
    torch.save(state, tmp_path / "staged.pth")
    digest = weights.file_sha256(tmp_path / "staged.pth")
    good = f"tiny-{digest[:8]}.pth"
    os.rename(tmp_path / "staged.pth", tmp_path / good)
    monkeypatch.setitem(weights.WEIGHT_FILES, "tiny",
                        weights.WeightFile(good, "http://127.0.0.1:9/" + good, "a test net"))
    loaded, record = weights.load_state_dict("tiny", str(tmp_path))
    assert torch.equal(loaded["layer.weight"], state["layer.weight"])
    assert record == {"file": good, "sha256": digest, "what": "a test net"}
    # another file under the published name is refused
    bad = f"other-{'0' * 8}.pth"
    (tmp_path / bad).write_bytes(b"truncated download")
    monkeypatch.setitem(weights.WEIGHT_FILES, "other", weights.WeightFile(bad, "http://127.0.0.1:9/" + bad, "x"))
    with pytest.raises(UsageError, match="is not the published"):
        weights.locate("other", str(tmp_path))
    with pytest.raises(UsageError, match=r"--weights_dir .*: no resnet152-394f9c45.pth .* download it from https://"):
        weights.locate("resnet152", str(tmp_path))
    # without --weights_dir a missing file is downloaded; an offline machine gets the way out
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(UsageError, match="cannot download .* pass --weights_dir"):
        weights.locate("other")


def test_records_tell_training_settings_apart(tmp_path):
    folder = str(tmp_path / "vggish")
    made = StubExtractor(kinds=("audio",), random_weights=True).record("audio")
    records.claim_folder(folder, made)
    assert records.differences_from_training({"audio": folder}, {"audio": made}) == []
    post = dict(made, settings=dict(made["settings"], postprocess="AudioSet PCA, clip to [-2, 2], 8-bit quantisation"))
    assert records.differences_from_training({"audio": folder}, {"audio": post}) == [
        "audio: postprocess was 'none (raw embedding)' in training, "
        "'AudioSet PCA, clip to [-2, 2], 8-bit quantisation' now"]
    # downloaded features have no record: nothing to compare
    assert records.differences_from_training({"audio": str(tmp_path)}, {"audio": post}) == []


# ---------------------------------------------------------------- the command line

def test_extract_features_cli(videos, tmp_path, monkeypatch, capsys):
    from scripts import extract_features as cli
    monkeypatch.setattr(extractor_module, "FeatureExtractor", StubExtractor)
    folder = tmp_path / "in"
    folder.mkdir()
    for name, video in (("holiday_video_a", "ten"), ("holiday_video_b", "long")):
        os.symlink(videos[video]["path"], folder / f"{name}.mp4")
    (folder / "notes.txt").write_text("not a video")
    out = str(tmp_path / "out")
    entries = cli.main(cli.get_args_parser().parse_args([str(folder), "--out_dir", out, "--random_weights",
                                                         "--kinds", "audio", "snippets", "--progress", "off"]))
    assert sorted(entries) == ["holiday_video_a", "holiday_video_b"]
    assert sorted(os.listdir(feature_folder(out, "audio"))) == sorted(
        ["extraction.json", "holiday_video_a.npy", "holiday_video_b_0_10.npy", "holiday_video_b_10_20.npy",
         "holiday_video_b_15_25.npy"])
    assert not os.path.exists(feature_folder(out, "frames"))
    captured = capsys.readouterr()
    assert "random weights" in captured.err and "share their first 11 characters" in captured.err
    assert "2 video(s), 4 window(s) of audio, snippets features" in captured.out
    for argv, message in [([str(tmp_path / "nothing")], "no such file or folder"),
                          ([str(tmp_path / "out")], "no video files"),
                          ([str(folder), "--frames_batch", "0"], "--frames_batch 0: must be at least 1")]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(cli.get_args_parser().parse_args(argv + ["--out_dir", out, "--progress", "off"]))
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_extract_features_cli_names_every_bad_video_of_a_folder_before_building_any_network(videos, tmp_path,
                                                                                           monkeypatch, capsys):
    from scripts import extract_features as cli

    def no_networks(*args, **kwargs):
        raise AssertionError("the networks were built before the videos were checked")
    monkeypatch.setattr(extractor_module, "FeatureExtractor", no_networks)
    folder = tmp_path / "in"
    folder.mkdir()
    refused = bad_videos(videos, folder)
    del refused[str(folder / "absent.mp4")]   # a folder lists only files that are there
    os.symlink(videos["ten"]["path"], folder / "a_good.mp4")
    for path in [videos["mute"]["path"], videos["blink"]["path"], videos["vfr"]["path"]]:
        os.symlink(path, folder / os.path.basename(path))
        refused[str(folder / os.path.basename(path))] = refused.pop(path)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(cli.get_args_parser().parse_args([str(folder), "--out_dir", str(out), "--progress", "off"]))
    first, *lines = capsys.readouterr().err.splitlines()
    assert exit_info.value.code == 2 and first.startswith(f"error: {len(refused)} problem(s) among 8 video(s)")
    assert sorted(line.split(": ", 1)[0].strip() for line in lines) == sorted(refused)
    for line in lines:
        path, problem = line.strip().split(": ", 1)
        assert problem.startswith(refused[path])
    assert not out.exists()


def test_a_missing_pyav_is_one_line_naming_the_install(monkeypatch):
    import sys

    from utils.errors import UserError
    monkeypatch.setitem(sys.modules, "av", None)   # import av now raises ImportError
    with pytest.raises(UserError, match=r'^video decoding needs PyAV: pip install -e "\.\[video\]"$'):
        StubExtractor(random_weights=True)


@pytest.mark.parametrize("rotation, white_rows, white_columns", [(90, slice(120, 160), slice(None)),
                                                                  (-90, slice(0, 40), slice(None)),
                                                                  (180, slice(None), slice(120, 160))])
def test_frames_are_turned_upright_by_the_display_rotation(tmp_path, rotation, white_rows, white_columns):
    """A 160x120 frame whose left quarter is white, stored with a display rotation, is shown
    turned counterclockwise by it (ffmpeg's autorotation): 90 puts the white quarter at the bottom."""
    import av
    path = str(tmp_path / "phone.mp4")
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.set_display_rotation(rotation)
        pixels = np.full((120, 160, 3), 40, dtype=np.uint8)
        pixels[:, :40] = 255
        for index in range(16):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    shown = decode.grid_frames(decode.probe(path), [3], FRAME_RATE, np.array)[3]
    assert shown.shape == ((120, 160, 3) if rotation == 180 else (160, 120, 3))
    white = np.zeros(shown.shape[:2], dtype=bool)
    white[white_rows, white_columns] = True
    assert shown[white].mean() > 240 and shown[~white].mean() < 60


def test_a_weight_file_loads_strictly_and_one_of_another_layout_is_refused(tmp_path, monkeypatch):
    """The extractor loads torchvision's file into our R(2+1)D-18 exactly; a file missing a tensor
    is refused naming the file and the tensor (not loaded in part)."""
    from extraction.visual_nets import r2plus1d_18

    def stage(state):
        torch.save(state, tmp_path / "staged.pth")
        name = f"r2plus1d_18-{weights.file_sha256(tmp_path / 'staged.pth')[:8]}.pth"
        os.replace(tmp_path / "staged.pth", tmp_path / name)
        monkeypatch.setitem(weights.WEIGHT_FILES, "r2plus1d_18", weights.WeightFile(name, "http://127.0.0.1:9/", "x"))
        return name

    torch.manual_seed(5)
    state = r2plus1d_18().state_dict()
    stage(state)
    loaded = FeatureExtractor(kinds=("snippets",), weights_dir=str(tmp_path)).networks["snippets"].state_dict()
    torch.testing.assert_close(loaded["layer4.1.conv2.0.3.weight"], state["layer4.1.conv2.0.3.weight"], rtol=0, atol=0)
    del state["fc.bias"]
    name = stage(state)
    with pytest.raises(UsageError, match=rf"(?s){name} does not fit R\(2\+1\)D-18: .*fc.bias"):
        FeatureExtractor(kinds=("snippets",), weights_dir=str(tmp_path))
