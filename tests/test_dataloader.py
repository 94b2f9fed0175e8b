"""Tests of dataloader.py and the modules it puts together (PROTOCOL.md §2): annotations
(avvp_data/annotations.py), feature files (avvp_data/feature_files.py), the packed cache
(avvp_data/feature_cache.py) and LLP splits (dataloader.py).

Everything runs on tiny hand-made files under tmp_path; the real-file tests at
the end use ../shared/llp and skip when it is absent.
"""
import dataclasses
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import avvp_data.feature_files as feature_files_module
from avvp_data.annotations import (
    annotation_version,
    looks_like_llp_filename,
    read_eval_rows,
    read_segment_truth,
    read_video_labels,
    segment_truth_with_coverage,
    unmatched_eval_rows,
)
from avvp_data.feature_cache import CACHE_FORMAT, PackedFeatureCache, default_cache_dir
from avvp_data.feature_files import feature_file_name
from avvp_data.llp import (
    CLASS_INDEX,
    EVAL_AUDIO_CSV,
    EVAL_VISUAL_CSV,
    FEATURE_KINDS,
    LABEL_FULL_CSV,
    LABEL_TEST_CSV,
    LABEL_TRAIN_CSV,
    LABEL_VAL_CSV,
    NUM_CLASSES,
    NUM_SEGMENTS,
)
from conftest import SHARED_LLP
from dataloader import (
    MAX_SHARE_WITHOUT_TRUTH,
    MAX_VIDEOS_WITHOUT_TRUTH,
    LLPPaths,
    LLPSplit,
    load_features,
    load_split,
    max_videos_without_truth,
)
from utils.errors import LLPDataError, LLPDataWarning

LLP_DIR = SHARED_LLP
EVAL_HEADER = ("filename", "onset", "offset", "event_labels")
LABEL_HEADER = ("filename", "event_labels")
VIDEOS = ("aaaaaaaaaaa_0_10", "b-b_bbbbbbb_30_40", "ccccccccccc_5_15")


def write_tsv(path, header, rows):
    """Tab-separated file with a header, as the published files are."""
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
    Path(path).write_text("\n".join(lines) + "\n")
    return str(path)


def make_features(root, filenames, dims=None, seed=0):
    """Feature folders of random float32 files; returns (dirs, arrays by kind)."""
    rng = np.random.default_rng(seed)
    dirs, arrays = {}, {}
    for kind, (folder, (rows, dim)) in FEATURE_KINDS.items():
        dim = (dims or {}).get(kind, dim)
        dirs[kind] = str(root / folder)
        os.makedirs(dirs[kind], exist_ok=True)
        arrays[kind] = rng.standard_normal((len(filenames), rows, dim)).astype(np.float32)
        for name, array in zip(filenames, arrays[kind]):
            np.save(os.path.join(dirs[kind], feature_file_name(name)), array)
    return dirs, arrays


def feature_path(dirs, kind, name):
    return os.path.join(dirs[kind], feature_file_name(name))


def record_warnings(function, *args, **kwargs):
    """(result, [warning messages]) with every warning kept."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    return result, [str(w.message) for w in caught if issubclass(w.category, Warning)]


# ------------------------------------------------------------- weak labels

def test_read_video_labels_multi_hot(tmp_path):
    csv_path = write_tsv(tmp_path / "labels.csv", LABEL_HEADER,
                         [(VIDEOS[0], "Speech,Dog"), (VIDEOS[1], "Clapping"),
                          (VIDEOS[2], "Frying_(food),Speech,Speech")])
    filenames, labels = read_video_labels(csv_path)
    assert filenames == list(VIDEOS)
    assert labels.shape == (3, NUM_CLASSES) and labels.dtype == np.float32
    expected = np.zeros((3, NUM_CLASSES), np.float32)
    expected[0, [CLASS_INDEX["Speech"], CLASS_INDEX["Dog"]]] = 1
    expected[1, CLASS_INDEX["Clapping"]] = 1
    expected[2, [CLASS_INDEX["Frying_(food)"], CLASS_INDEX["Speech"]]] = 1
    np.testing.assert_array_equal(labels, expected)


def test_label_unknown_class_names_file_and_line(tmp_path):
    csv_path = write_tsv(tmp_path / "labels.csv", LABEL_HEADER,
                         [(VIDEOS[0], "Speech"), (VIDEOS[1], "Speech,Dgo")])
    with pytest.raises(LLPDataError, match=r"labels\.csv.*\n.*line 3: unknown class 'Dgo'"):
        read_video_labels(csv_path)


def test_label_repeated_filename_is_an_error(tmp_path):
    csv_path = write_tsv(tmp_path / "labels.csv", LABEL_HEADER,
                         [(VIDEOS[0], "Speech"), (VIDEOS[0], "Dog")])
    with pytest.raises(LLPDataError, match="line 3: filename .* already on line 2"):
        read_video_labels(csv_path)


def test_label_missing_column(tmp_path):
    csv_path = write_tsv(tmp_path / "labels.csv", ("filename", "labels"), [(VIDEOS[0], "Speech")])
    with pytest.raises(LLPDataError, match=r"labels\.csv: missing column\(s\) event_labels"):
        read_video_labels(csv_path)


def test_comma_separated_file_reports_missing_columns(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("filename,event_labels\nx,Speech\n")
    with pytest.raises(LLPDataError, match="missing column.*tab-separated"):
        read_video_labels(path)


def test_wrong_field_count_names_line(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(f"filename\tevent_labels\n{VIDEOS[0]}\tSpeech\textra\n")
    with pytest.raises(LLPDataError, match="line 2: 3 fields, header has 2"):
        read_video_labels(path)


def test_header_only_label_file_has_no_videos(tmp_path):
    path = write_tsv(tmp_path / "labels.csv", LABEL_HEADER, [])
    with pytest.raises(LLPDataError, match=r"labels\.csv: no videos"):
        read_video_labels(path)
    Path(path).write_text("filename\tevent_labels\n\n\n")   # blank lines are no videos either
    with pytest.raises(LLPDataError, match=r"labels\.csv: no videos"):
        read_video_labels(path)


def test_whitespace_in_label_file_names_every_line(tmp_path):
    # A trailing space after a filename used to be kept, so the video matched no eval row.
    csv_path = write_tsv(tmp_path / "labels.csv", LABEL_HEADER, [
        (VIDEOS[0] + " ", "Speech"), (VIDEOS[1], "Speech, Dog"), (" " + VIDEOS[2], "Cat\u00a0")])
    with pytest.raises(LLPDataError) as error:
        read_video_labels(csv_path)
    message = str(error.value)
    assert message.startswith(f"{csv_path}: 4 bad row(s) (names must match exactly, PROTOCOL.md §2):\n")
    assert message.splitlines()[1:] == [
        f"  line 2: filename '{VIDEOS[0]} ' has leading or trailing whitespace",
        "  line 3: class ' Dog' has leading or trailing whitespace",
        f"  line 4: filename ' {VIDEOS[2]}' has leading or trailing whitespace",
        "  line 4: class 'Cat\\xa0' has leading or trailing whitespace",
    ]


# ----------------------------------------------------------- segment truth

def test_segment_truth_exact_values(tmp_path):
    csv_path = write_tsv(tmp_path / "eval.csv", EVAL_HEADER, [
        (VIDEOS[1], 0, 3, "Speech"),
        (VIDEOS[1], 6, 10, "Speech"),       # second row of the same class: OR-ed
        (VIDEOS[1], 2, 5, "Speech"),        # overlapping row: no double count
        (VIDEOS[0], 9, 10, "Dog"),          # last segment only
        (VIDEOS[0], 4, 4, "Cat"),           # offset == onset: nothing
        (VIDEOS[0], 7, 2, "Car"),           # offset < onset: nothing
        (VIDEOS[2], 0, 10, "Clapping"),     # a video not asked for: ignored
    ])
    filenames = [VIDEOS[1], VIDEOS[0]]     # order of the output rows
    truth, messages = record_warnings(read_segment_truth, csv_path, filenames,
                                      known_filenames=VIDEOS)
    assert truth.shape == (2, NUM_CLASSES, NUM_SEGMENTS) and truth.dtype == np.uint8
    expected = np.zeros_like(truth)
    expected[0, CLASS_INDEX["Speech"]] = [1, 1, 1, 1, 1, 0, 1, 1, 1, 1]
    expected[1, CLASS_INDEX["Dog"], 9] = 1
    np.testing.assert_array_equal(truth, expected)
    assert len(messages) == 1 and "2 row(s) have offset <= onset" in messages[0]
    assert "line 6:" in messages[0] and "line 7:" in messages[0]


@pytest.mark.parametrize("row, message", [
    ((VIDEOS[0], 0, 3, "Dgo"), "line 3: unknown class 'Dgo'"),
    ((VIDEOS[0], "1.5", 3, "Dog"), "line 3: onset '1.5' is not an integer"),
    ((VIDEOS[0], "", 3, "Dog"), "line 3: onset '' is not an integer"),
    ((VIDEOS[0], 0, 11, "Dog"), "line 3: offset '11' outside 0..10"),
    ((VIDEOS[0], -1, 3, "Dog"), "line 3: onset '-1' outside 0..10"),
])
def test_eval_bad_row_is_an_error_naming_file_and_line(tmp_path, row, message):
    csv_path = write_tsv(tmp_path / "eval.csv", EVAL_HEADER, [(VIDEOS[0], 0, 10, "Speech"), row])
    with pytest.raises(LLPDataError, match=r"eval\.csv: 1 bad row") as error:
        read_segment_truth(csv_path, list(VIDEOS))
    assert message in str(error.value)


def test_eval_bad_row_of_another_split_is_still_an_error(tmp_path):
    csv_path = write_tsv(tmp_path / "eval.csv", EVAL_HEADER, [("zzzzzzzzzzz_0_10", 0, 30, "Dog")])
    with pytest.raises(LLPDataError, match="line 2: offset '30'"):
        read_segment_truth(csv_path, list(VIDEOS))


def test_eval_missing_column(tmp_path):
    csv_path = write_tsv(tmp_path / "eval.csv", ("filename", "onset", "event_labels"),
                         [(VIDEOS[0], 0, "Dog")])
    with pytest.raises(LLPDataError, match=r"eval\.csv: missing column\(s\) offset"):
        read_segment_truth(csv_path, list(VIDEOS))


def test_whitespace_in_eval_file_names_every_line(tmp_path):
    csv_path = write_tsv(tmp_path / "eval.csv", EVAL_HEADER, [
        (VIDEOS[0], 0, 10, "Speech"), (VIDEOS[1] + " ", 0, 3, "Dog"), (VIDEOS[2], 0, 3, " Dog"),
        (VIDEOS[0], 3, 5, "Dog ")])
    with pytest.raises(LLPDataError) as error:
        read_segment_truth(csv_path, list(VIDEOS))
    message = str(error.value)
    assert message.startswith(f"{csv_path}: 3 bad row(s) (names must match exactly")
    assert f"  line 3: filename '{VIDEOS[1]} ' has leading or trailing whitespace" in message
    assert "  line 4: class ' Dog' has leading or trailing whitespace" in message
    assert "  line 5: class 'Dog ' has leading or trailing whitespace" in message
    assert "unknown class" not in message   # reported once, as whitespace


def test_whitespace_lines_are_all_counted_and_capped_like_other_errors(tmp_path):
    rows = [(f"v{i:010d}_0_10 ", 0, 10, "Dog") for i in range(25)]
    csv_path = write_tsv(tmp_path / "eval.csv", EVAL_HEADER, rows)
    with pytest.raises(LLPDataError, match=r"eval\.csv: 25 bad row\(s\)") as error:
        read_eval_rows(csv_path)
    lines = str(error.value).splitlines()
    assert lines[1] == "  line 2: filename 'v0000000000_0_10 ' has leading or trailing whitespace"
    assert lines[20].startswith("  line 21:") and lines[-1] == "  ... and 5 more"


def test_unmatched_rows_warn_and_are_ignored(tmp_path):
    csv_path = write_tsv(tmp_path / "eval.csv", EVAL_HEADER, [
        (VIDEOS[0], 0, 10, "Dog"),
        ("Baby_cry_infant_cry", 0, 4, "Speech"),     # class name in the filename column
        (VIDEOS[1] + "`", 0, 1, "Cat"),              # stray backtick
        ("zzzzzzzzzzz_0_10", 0, 10, "Dog"),          # well formed, but no known video
        (VIDEOS[2], 0, 10, "Dog"),                   # another split's video: silent
    ])
    known = list(VIDEOS)
    truth, messages = record_warnings(read_segment_truth, csv_path, [VIDEOS[0]], known)
    assert truth.sum() == NUM_SEGMENTS
    assert len(messages) == 1
    assert "3 row(s) of 3 filename(s) that match no known video" in messages[0]
    for expected in ("'Baby_cry_infant_cry' (line 3)", f"'{VIDEOS[1]}`' (line 4)",
                     "'zzzzzzzzzzz_0_10' (line 5)"):
        assert expected in messages[0]
    assert unmatched_eval_rows(csv_path, known) == [
        (3, "Baby_cry_infant_cry"), (4, VIDEOS[1] + "`"), (5, "zzzzzzzzzzz_0_10")]


def test_unmatched_without_known_filenames_flags_malformed_names(tmp_path):
    csv_path = write_tsv(tmp_path / "eval.csv", EVAL_HEADER, [
        ("Baby_cry_infant_cry", 0, 4, "Speech"), ("zzzzzzzzzzz_0_10", 0, 10, "Dog"),
        ("Baby_cry_infant_cry", 7, 10, "Speech")])
    _, messages = record_warnings(read_segment_truth, csv_path, [VIDEOS[0]])
    assert len(messages) == 1
    assert "2 row(s) of 1 filename(s) that are not well-formed" in messages[0]
    assert "'Baby_cry_infant_cry' (lines 2, 4)" in messages[0]
    assert unmatched_eval_rows(csv_path) == [(2, "Baby_cry_infant_cry"), (4, "Baby_cry_infant_cry")]


def test_data_warnings_have_their_own_category(tmp_path):
    csv_path = write_tsv(tmp_path / "eval.csv", EVAL_HEADER, [("Speech", 0, 4, "Speech")])
    with pytest.warns(LLPDataWarning, match=r"eval\.csv: 1 row\(s\) of 1 filename"):
        read_segment_truth(csv_path, [VIDEOS[0]])


def test_unmatched_warning_is_capped(tmp_path):
    rows = [(f"zzzzzzzzz{i:02d}_0_10", 0, 10, "Dog") for i in range(30)]
    csv_path = write_tsv(tmp_path / "eval.csv", EVAL_HEADER, rows)
    _, messages = record_warnings(read_segment_truth, csv_path, [VIDEOS[0]], [VIDEOS[0]])
    assert "... and 10 more" in messages[0]
    assert len(messages[0].splitlines()) == 1 + 20 + 1


def test_llp_filename_pattern():
    for good in ("BjCEufrlXm4_20_30", "-_a-b_c-d_e_0_10", "AP0061o0Nvk_101.8_111.8"):
        assert looks_like_llp_filename(good)
    for bad in ("Baby_cry_infant_cry", "KvIjsmANkxI_10_20`", "P7x4FV4lg_570_580", ""):
        assert not looks_like_llp_filename(bad)


def test_annotation_version_unrecognised(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"filename\tevent_labels\n")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert annotation_version(path) == f"unrecognised (sha256 {digest})"


# ---------------------------------------------------------------- features

def test_load_features_values_and_dtypes(tmp_path):
    dirs, arrays = make_features(tmp_path / "feats", VIDEOS)
    features = load_features(dirs, list(VIDEOS))[0]
    assert list(features) == list(FEATURE_KINDS)
    for kind, array in features.items():
        assert array.dtype == np.float32
        assert array.shape == (len(VIDEOS),) + FEATURE_KINDS[kind][1]
        np.testing.assert_array_equal(array, arrays[kind])


def test_float64_and_float16_inputs_are_accepted(tmp_path):
    dirs, arrays = make_features(tmp_path / "feats", VIDEOS)
    np.save(feature_path(dirs, "audio", VIDEOS[0]), arrays["audio"][0].astype(np.float64))
    np.save(feature_path(dirs, "snippets", VIDEOS[1]), arrays["snippets"][1].astype(np.float16))
    features = load_features(dirs, list(VIDEOS))[0]
    np.testing.assert_array_equal(features["audio"], arrays["audio"])
    np.testing.assert_allclose(features["snippets"], arrays["snippets"], atol=1e-2)


def test_float16_frames(tmp_path):
    dirs, arrays = make_features(tmp_path / "feats", VIDEOS)
    features = load_features(dirs, list(VIDEOS), frame_dtype="float16")[0]
    assert features["frames"].dtype == np.float16
    assert features["audio"].dtype == features["snippets"].dtype == np.float32
    np.testing.assert_allclose(features["frames"], arrays["frames"], atol=1e-2)
    with pytest.raises(ValueError, match="frame_dtype"):
        load_features(dirs, list(VIDEOS), frame_dtype="bfloat16")


def test_other_feature_dim_plugs_in(tmp_path):
    # CLIP/CLAP-like features: another last dim, the same for all files of a kind.
    dirs, arrays = make_features(tmp_path / "feats", VIDEOS, dims={"frames": 768, "audio": 512})
    features = load_features(dirs, list(VIDEOS))[0]
    assert features["frames"].shape == (3, 80, 768) and features["audio"].shape == (3, 10, 512)
    np.testing.assert_array_equal(features["frames"], arrays["frames"])


def test_inconsistent_feature_dim_is_an_error(tmp_path):
    dirs, _ = make_features(tmp_path / "feats", VIDEOS)
    odd = feature_path(dirs, "audio", VIDEOS[2])
    np.save(odd, np.zeros((10, 64), np.float32))
    with pytest.raises(LLPDataError, match=r"1 bad feature file") as error:
        load_features(dirs, list(VIDEOS))
    assert f"{odd}: shape (10, 64), expected (10, 128) like the other audio files" in str(error.value)


def test_all_feature_problems_in_one_error(tmp_path):
    dirs, _ = make_features(tmp_path / "feats", VIDEOS)
    broken = {
        "missing": feature_path(dirs, "audio", VIDEOS[0]),
        "shape": feature_path(dirs, "audio", VIDEOS[1]),
        "dtype": feature_path(dirs, "snippets", VIDEOS[0]),
        "nan": feature_path(dirs, "frames", VIDEOS[1]),
        "inf": feature_path(dirs, "snippets", VIDEOS[2]),
        "corrupt": feature_path(dirs, "frames", VIDEOS[0]),
        "truncated": feature_path(dirs, "frames", VIDEOS[2]),
        "overflow": feature_path(dirs, "audio", VIDEOS[2]),
    }
    os.remove(broken["missing"])
    np.save(broken["shape"], np.zeros((9, 128), np.float32))
    np.save(broken["dtype"], np.zeros((10, 512), np.int64))
    nan = np.zeros((80, 2048), np.float32)
    nan[3, 5] = np.nan
    np.save(broken["nan"], nan)
    np.save(broken["inf"], np.full((10, 512), np.inf, np.float32))
    Path(broken["corrupt"]).write_bytes(b"this is not a npy file")
    data = Path(broken["truncated"]).read_bytes()
    Path(broken["truncated"]).write_bytes(data[: len(data) // 2])
    np.save(broken["overflow"], np.full((10, 128), 1e300))   # finite float64, Inf as float32
    with pytest.raises(LLPDataError) as error:
        load_features(dirs, list(VIDEOS))
    message = str(error.value)
    assert message.startswith("8 bad feature file(s):")
    assert f"{broken['missing']}: missing" in message
    assert f"{broken['shape']}: shape (9, 128), expected (rows, dim) with rows 10 or 64" in message
    assert f"{broken['dtype']}: dtype int64" in message
    assert f"{broken['nan']}: NaN/Inf" in message
    assert f"{broken['inf']}: NaN/Inf" in message
    assert f"{broken['corrupt']}: unreadable" in message
    assert f"{broken['truncated']}: unreadable" in message
    assert f"{broken['overflow']}: NaN/Inf values (as float32)" in message


def test_feature_error_list_is_capped(tmp_path):
    names = [f"v{i:010d}_0_10" for i in range(30)]
    dirs = {kind: str(tmp_path / folder) for kind, (folder, _) in FEATURE_KINDS.items()}
    with pytest.raises(LLPDataError, match=r"^90 bad feature file") as error:
        load_features(dirs, names)
    assert str(error.value).endswith("... and 70 more")


def test_unknown_feature_kind(tmp_path):
    with pytest.raises(ValueError, match="unknown feature kind"):
        load_features({"depth": str(tmp_path)}, list(VIDEOS))


# ------------------------------------------------------------------- cache

def source_reads(np_load, dirs):
    """Calls of a mocked np.load that read a source feature file."""
    return [call for call in np_load.call_args_list
            if any(str(call.args[0]).startswith(folder) for folder in dirs.values())]


def test_cache_is_reused_without_reading_sources(tmp_path):
    dirs, arrays = make_features(tmp_path / "feats", VIDEOS)
    cache_dir = tmp_path / "cache"
    load_features(dirs, list(VIDEOS), cache=PackedFeatureCache(cache_dir), split="val")
    for kind in FEATURE_KINDS:
        manifest = json.loads((cache_dir / f"val_{kind}.json").read_text())
        assert manifest["num_videos"] == 3 and manifest["kind"] == kind
        assert manifest["format"] == CACHE_FORMAT == 2
        assert (cache_dir / f"val_{kind}.npy").is_file()
    assert not list(cache_dir.glob(".tmp_*"))
    with mock.patch.object(feature_files_module.np, "load", wraps=np.load) as np_load:
        features = load_features(dirs, list(VIDEOS), cache=PackedFeatureCache(cache_dir), split="val")[0]
    assert not source_reads(np_load, dirs)
    for kind in FEATURE_KINDS:
        np.testing.assert_array_equal(features[kind], arrays[kind])


def replace_keeping_size_and_mtime(path, array, how):
    """Replace a feature file as `cp -p` (in place) or `rsync -a` (new file renamed over it) do:
    other content, the same size, the old mtime restored. Returns (stat before, stat after)."""
    before = os.stat(path)
    deadline = time.monotonic() + 5
    while True:
        if how == "in_place":
            np.save(path, array)
        else:
            temporary = path + ".partial.npy"
            np.save(temporary, array)
            os.replace(temporary, path)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = os.stat(path)
        # a filesystem with coarse timestamps may show the old ctime within one tick: write again
        if after.st_ctime_ns != before.st_ctime_ns or after.st_ino != before.st_ino or time.monotonic() > deadline:
            return before, after
        time.sleep(0.01)


@pytest.mark.parametrize("how", ["in_place", "renamed"])
def test_cache_is_rebuilt_when_a_file_is_replaced_keeping_size_and_mtime(tmp_path, how):
    # cp -p, rsync -a and tar copy the mtime: a fingerprint of size and mtime served the old features.
    dirs, arrays = make_features(tmp_path / "feats", VIDEOS)
    cache_dir = tmp_path / "cache"
    load_features(dirs, list(VIDEOS), cache=PackedFeatureCache(cache_dir))
    path = feature_path(dirs, "snippets", VIDEOS[1])
    new = arrays["snippets"][1] + 1.0
    before, after = replace_keeping_size_and_mtime(path, new, how)
    # what the old fingerprint (CACHE_FORMAT 1) held is unchanged: it would have matched
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert (after.st_ctime_ns, after.st_ino) != (before.st_ctime_ns, before.st_ino)
    features = load_features(dirs, list(VIDEOS), cache=PackedFeatureCache(cache_dir))[0]
    np.testing.assert_array_equal(features["snippets"][1], new)
    np.testing.assert_array_equal(features["snippets"][[0, 2]], arrays["snippets"][[0, 2]])
    np.testing.assert_array_equal(features["audio"], arrays["audio"])
    # and the rebuilt entry is served from then on
    with mock.patch.object(feature_files_module.np, "load", wraps=np.load) as np_load:
        again = load_features(dirs, list(VIDEOS), cache=PackedFeatureCache(cache_dir))[0]
    assert not source_reads(np_load, dirs)
    np.testing.assert_array_equal(again["snippets"][1], new)


def test_cache_is_rebuilt_when_a_source_changes(tmp_path):
    dirs, arrays = make_features(tmp_path / "feats", VIDEOS)
    cache_dir = tmp_path / "cache"
    load_features(dirs, list(VIDEOS), cache=PackedFeatureCache(cache_dir))
    path = feature_path(dirs, "audio", VIDEOS[1])
    new = np.ones((10, 128), np.float32)
    np.save(path, new)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    features = load_features(dirs, list(VIDEOS), cache=PackedFeatureCache(cache_dir))[0]
    np.testing.assert_array_equal(features["audio"][1], new)
    np.testing.assert_array_equal(features["frames"], arrays["frames"])


def test_cache_is_rebuilt_for_other_videos_or_dtype(tmp_path):
    dirs, arrays = make_features(tmp_path / "feats", VIDEOS)
    cache_dir = tmp_path / "cache"
    load_features(dirs, list(VIDEOS), cache=PackedFeatureCache(cache_dir))
    subset = load_features(dirs, [VIDEOS[2], VIDEOS[0]], cache=PackedFeatureCache(cache_dir))[0]
    np.testing.assert_array_equal(subset["snippets"], arrays["snippets"][[2, 0]])
    half = load_features(dirs, [VIDEOS[2], VIDEOS[0]], cache=PackedFeatureCache(cache_dir), frame_dtype="float16")[0]
    assert half["frames"].dtype == np.float16
    again = load_features(dirs, [VIDEOS[2], VIDEOS[0]], cache=PackedFeatureCache(cache_dir))[0]
    assert again["frames"].dtype == np.float32


def test_damaged_cache_is_rebuilt(tmp_path):
    dirs, arrays = make_features(tmp_path / "feats", VIDEOS)
    cache_dir = tmp_path / "cache"
    load_features(dirs, list(VIDEOS), cache=PackedFeatureCache(cache_dir))
    (cache_dir / "videos_audio.npy").write_bytes(b"garbage")
    features = load_features(dirs, list(VIDEOS), cache=PackedFeatureCache(cache_dir))[0]
    np.testing.assert_array_equal(features["audio"], arrays["audio"])
    assert np.load(cache_dir / "videos_audio.npy").shape == (3, 10, 128)


def test_unwritable_cache_warns_and_loads(tmp_path):
    dirs, arrays = make_features(tmp_path / "feats", VIDEOS)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    features, messages = record_warnings(load_features, dirs, list(VIDEOS),
                                         cache=PackedFeatureCache(blocker / "cache"))
    np.testing.assert_array_equal(features[0]["frames"], arrays["frames"])
    assert messages and all("continuing without cache" in m for m in messages)


def test_no_cache_written_when_features_are_bad(tmp_path):
    dirs, _ = make_features(tmp_path / "feats", VIDEOS)
    os.remove(feature_path(dirs, "frames", VIDEOS[0]))
    with pytest.raises(LLPDataError):
        load_features(dirs, list(VIDEOS), cache=PackedFeatureCache(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.json"))


# ------------------------------------------------------------------- split

def test_default_cache_dir_is_beside_the_feature_folders(tmp_path):
    audio_dir = tmp_path / "feats" / "vggish"
    assert default_cache_dir(audio_dir) == str(tmp_path / "feats" / ".packed_cache")
    assert default_cache_dir(str(audio_dir) + "/") == str(tmp_path / "feats" / ".packed_cache")


def test_official_paths_are_the_published_layout(tmp_path):
    paths = LLPPaths.official(tmp_path)
    assert dataclasses.asdict(paths) == {
        "audio_dir": str(tmp_path / "feats" / "vggish"),
        "video_dir": str(tmp_path / "feats" / "res152"),
        "st_dir": str(tmp_path / "feats" / "r2plus1d_18"),
        "label_train": str(tmp_path / "data" / "AVVP_train.csv"),
        "label_val": str(tmp_path / "data" / "AVVP_val_pd.csv"),
        "label_test": str(tmp_path / "data" / "AVVP_test_pd.csv"),
        "eval_audio_csv": str(tmp_path / "data" / "AVVP_eval_audio.csv"),
        "eval_visual_csv": str(tmp_path / "data" / "AVVP_eval_visual.csv"),
    }
    assert LLPPaths.official(str(tmp_path)) == paths
    assert paths.feature_dirs() == {"audio": paths.audio_dir, "frames": paths.video_dir,
                                    "snippets": paths.st_dir}
    assert [paths.label_csv(split) for split in ("train", "val", "test")] == [
        paths.label_train, paths.label_val, paths.label_test]


def split_files(tmp_path):
    """A tiny data/ folder in the published layout and feature folders."""
    data = tmp_path / "data"
    data.mkdir()
    val, test = [VIDEOS[0], VIDEOS[1]], [VIDEOS[2]]
    write_tsv(data / LABEL_VAL_CSV, LABEL_HEADER, [(val[0], "Speech,Dog"), (val[1], "Cat")])
    write_tsv(data / LABEL_TEST_CSV, LABEL_HEADER, [(test[0], "Car")])
    write_tsv(data / EVAL_AUDIO_CSV, EVAL_HEADER, [
        (val[0], 0, 5, "Speech"), (val[1], 2, 4, "Cat"), (test[0], 0, 10, "Car"),
        ("zzzzzzzzzzz_0_10", 0, 10, "Dog")])
    write_tsv(data / EVAL_VISUAL_CSV, EVAL_HEADER, [(val[0], 3, 10, "Dog")])
    dirs, arrays = make_features(tmp_path / "feats", VIDEOS)
    return data, dirs, arrays


def test_load_split_end_to_end(tmp_path):
    _, dirs, arrays = split_files(tmp_path)
    paths = LLPPaths.official(tmp_path)      # split_files writes the official layout
    split, messages = record_warnings(
        load_split, paths, "val", cache=PackedFeatureCache(default_cache_dir(paths.audio_dir)))
    assert isinstance(split, LLPSplit) and split.name == "val" and split.num_videos == 2
    assert split.filenames == [VIDEOS[0], VIDEOS[1]]
    assert split.feature_dims() == {"audio": 128, "frames": 2048, "snippets": 512}
    np.testing.assert_array_equal(split.frames, arrays["frames"][:2])
    assert split.labels[0, CLASS_INDEX["Dog"]] == 1 and split.labels.sum() == 3
    assert split.gt_audio.shape == split.gt_visual.shape == (2, NUM_CLASSES, NUM_SEGMENTS)
    assert split.gt_audio[0, CLASS_INDEX["Speech"]].tolist() == [1] * 5 + [0] * 5
    assert split.gt_audio.sum() == 7 and split.gt_visual.sum() == 7
    # Test rows are silent (val/test label files read from beside the eval file);
    # only the row of no known video is reported.
    assert len(messages) == 1 and "1 row(s) of 1 filename(s) that match no known video" in messages[0]
    cache = Path(default_cache_dir(dirs["audio"]))
    assert sorted(p.name for p in cache.glob("*.json")) == [
        "val_audio.json", "val_frames.json", "val_snippets.json"]


def test_load_split_without_eval_files_or_cache(tmp_path):
    _, dirs, _ = split_files(tmp_path)
    split = load_split(LLPPaths.official(tmp_path), "test", with_truth=False, frame_dtype="float16")
    assert split.gt_audio is None and split.gt_visual is None
    assert split.frames.dtype == np.float16 and split.num_videos == 1
    assert not Path(default_cache_dir(dirs["audio"])).exists()


def test_trailing_space_in_val_label_file_fails_instead_of_losing_truth(tmp_path):
    # The reported problem: every val filename with a trailing space matched no eval row, so
    # every val video silently had no truth (Visual 100.0). Now loading fails naming the lines.
    split_files(tmp_path)
    val_csv = tmp_path / "data" / LABEL_VAL_CSV
    write_tsv(val_csv, LABEL_HEADER, [(VIDEOS[0] + " ", "Speech,Dog"), (VIDEOS[1] + " ", "Cat")])
    with pytest.raises(LLPDataError) as error:
        load_split(LLPPaths.official(tmp_path), "val")
    message = str(error.value)
    assert message.startswith(f"{val_csv}: 2 bad row(s) (names must match exactly")
    assert f"line 2: filename '{VIDEOS[0]} '" in message and f"line 3: filename '{VIDEOS[1]} '" in message


def test_header_only_split_is_an_error(tmp_path):
    split_files(tmp_path)
    write_tsv(tmp_path / "data" / LABEL_TEST_CSV, LABEL_HEADER, [])
    with pytest.raises(LLPDataError, match=f"{LABEL_TEST_CSV}: no videos"):
        load_split(LLPPaths.official(tmp_path), "test", with_truth=False)


def test_threshold_of_videos_without_truth():
    # the larger of 5 videos and 1% of the split
    assert (MAX_VIDEOS_WITHOUT_TRUTH, MAX_SHARE_WITHOUT_TRUTH) == (5, 0.01)
    assert max_videos_without_truth(10) == 5 and max_videos_without_truth(500) == 5
    assert max_videos_without_truth(649) == pytest.approx(6.49)     # LLP val: 7 or more fail
    assert max_videos_without_truth(1200) == pytest.approx(12)      # LLP test: 13 or more fail


def split_with_untruthed_videos(tmp_path, n_videos, n_without):
    """A val split of `n_videos` whose last `n_without` videos have no eval row; returns its paths."""
    names = [f"v{i:010d}_0_10" for i in range(n_videos)]
    data = tmp_path / "data"
    data.mkdir()
    write_tsv(data / LABEL_VAL_CSV, LABEL_HEADER, [(name, "Dog") for name in names])
    write_tsv(data / LABEL_TEST_CSV, LABEL_HEADER, [(VIDEOS[2], "Car")])
    covered = names[:n_videos - n_without]
    write_tsv(data / EVAL_AUDIO_CSV, EVAL_HEADER, [(name, 0, 10, "Dog") for name in covered[::2]])
    write_tsv(data / EVAL_VISUAL_CSV, EVAL_HEADER, [(name, 0, 10, "Dog") for name in covered[1::2]])
    make_features(tmp_path / "feats", names, dims={"audio": 4, "frames": 4, "snippets": 4})
    return LLPPaths.official(tmp_path), names


def test_a_few_videos_without_truth_are_named_in_a_warning(tmp_path):
    paths, names = split_with_untruthed_videos(tmp_path, n_videos=10, n_without=5)
    split, messages = record_warnings(load_split, paths, "val")
    assert split.num_videos == 10
    assert int(split.gt_audio.any(axis=(1, 2)).sum() + split.gt_visual.any(axis=(1, 2)).sum()) == 5
    assert len(messages) == 1
    assert messages[0].startswith(f"{paths.label_val}: 5 of 10 videos have a weak label but no row in "
                                  f"either {paths.eval_audio_csv} or {paths.eval_visual_csv}")
    assert "filenames must match the eval files exactly" in messages[0]
    assert [line.strip() for line in messages[0].splitlines()[1:]] == names[5:]
    with pytest.warns(LLPDataWarning, match="5 of 10 videos"):
        load_split(paths, "val")


def test_many_videos_without_truth_are_an_error(tmp_path):
    paths, names = split_with_untruthed_videos(tmp_path, n_videos=10, n_without=7)
    with pytest.raises(LLPDataError) as error:
        load_split(paths, "val")
    message = str(error.value)
    assert message.startswith(f"{paths.label_val}: 7 of 10 videos have a weak label but no row in ")
    assert ", ".join(repr(name) for name in names[3:8]) + ", ...)" in message   # 5 examples
    assert repr(names[8]) not in message
    assert "filenames must match the eval files exactly" in message
    # without truth nothing is checked
    assert load_split(paths, "val", with_truth=False).num_videos == 10


def test_coverage_counts_rows_not_positive_segments(tmp_path):
    # a row with offset <= onset adds no segment, but the video does have truth in that file
    csv_path = write_tsv(tmp_path / "eval.csv", EVAL_HEADER, [(VIDEOS[0], 4, 4, "Dog"), (VIDEOS[2], 0, 1, "Cat")])
    truth, has_rows = record_warnings(segment_truth_with_coverage, csv_path, list(VIDEOS), VIDEOS)[0]
    assert has_rows.tolist() == [True, False, True] and truth[0].sum() == 0


# -------------------------------------------------------------- real files

def real(name):
    if not (LLP_DIR / name).is_file():
        pytest.skip(f"real LLP annotations not found at {LLP_DIR}")
    return LLP_DIR / name


def test_real_label_files():
    sizes = {LABEL_TRAIN_CSV: 10000, LABEL_VAL_CSV: 649, LABEL_TEST_CSV: 1200, LABEL_FULL_CSV: 11849}
    names = {}
    for csv_name, size in sizes.items():
        names[csv_name], labels = read_video_labels(real(csv_name))
        assert len(names[csv_name]) == size and labels.shape == (size, NUM_CLASSES)
        assert labels.sum(axis=1).min() >= 1
        assert annotation_version(real(csv_name)) == f"{csv_name}, current"
    splits = [set(names[n]) for n in (LABEL_TRAIN_CSV, LABEL_VAL_CSV, LABEL_TEST_CSV)]
    assert set.union(*splits) == set(names[LABEL_FULL_CSV])
    assert sum(map(len, splits)) == len(names[LABEL_FULL_CSV])


REAL_ANNOTATION_FILES = (LABEL_TRAIN_CSV, LABEL_VAL_CSV, LABEL_TEST_CSV, LABEL_FULL_CSV, EVAL_AUDIO_CSV,
                         EVAL_VISUAL_CSV, "AVVP_eval_audio_2020_with_defects.csv")


@pytest.mark.parametrize("csv_name", REAL_ANNOTATION_FILES)
def test_real_files_have_no_outer_whitespace(csv_name):
    # Checked on ../shared/llp: no filename or class name of any of the 7 files has leading or
    # trailing whitespace, so the whitespace rule rejects none of them.
    path = real(csv_name)
    if csv_name.startswith("AVVP_eval"):
        assert len(read_eval_rows(path)) == (4131 if "audio" in csv_name else 2495)
    else:
        assert len(read_video_labels(path)[0]) > 0


def test_real_val_and_test_videos_all_have_eval_rows():
    # every val/test video has truth in some modality, with the current and the 2020 audio file
    (val, _), (test, _) = real_val_test()
    for audio_csv in (EVAL_AUDIO_CSV, "AVVP_eval_audio_2020_with_defects.csv"):
        for names in (val, test):
            (_, audio), _ = record_warnings(segment_truth_with_coverage, real(audio_csv), names, val + test)
            (_, visual), _ = record_warnings(segment_truth_with_coverage, real(EVAL_VISUAL_CSV), names, val + test)
            assert int((~(audio | visual)).sum()) == 0
            # ... but not in both: 4 + 70 val and 5 + 121 test videos lack one modality's rows
            assert (int((~audio).sum()), int((~visual).sum())) == ((4, 70) if names is val else (5, 121))


def real_val_test():
    val, val_labels = read_video_labels(real(LABEL_VAL_CSV))
    test, test_labels = read_video_labels(real(LABEL_TEST_CSV))
    return (val, val_labels), (test, test_labels)


@pytest.mark.parametrize("csv_name, rows, filenames", [(EVAL_AUDIO_CSV, 14, 8), (EVAL_VISUAL_CSV, 11, 7)])
def test_real_eval_files_warn_about_unmatched_rows(csv_name, rows, filenames):
    (val, _), (test, _) = real_val_test()
    _, messages = record_warnings(read_segment_truth, real(csv_name), test, val + test)
    unmatched = [m for m in messages if "match no known video" in m]
    assert len(unmatched) == 1
    assert f"{rows} row(s) of {filenames} filename(s)" in unmatched[0]
    assert "'19jWnmYnlD8_30_400' (line" in unmatched[0]
    empty = [m for m in messages if "offset <= onset" in m]
    assert len(empty) == (1 if csv_name == EVAL_AUDIO_CSV else 0)
    if empty:
        assert "6 row(s) have offset <= onset" in empty[0] and "line 3770" in empty[0]
    assert len(unmatched_eval_rows(real(csv_name), val + test)) == rows


def test_real_eval_versions():
    assert annotation_version(real(EVAL_AUDIO_CSV)).startswith(f"{EVAL_AUDIO_CSV}, current")
    assert annotation_version(real(EVAL_VISUAL_CSV)) == f"{EVAL_VISUAL_CSV}, current"
    assert "2020 copy with defects" in annotation_version(
        real("AVVP_eval_audio_2020_with_defects.csv"))


def test_real_2020_audio_file_warns_naming_bad_rows():
    (val, _), (test, _) = real_val_test()
    old = real("AVVP_eval_audio_2020_with_defects.csv")
    truth, messages = record_warnings(read_segment_truth, old, test, val + test)
    unmatched = next(m for m in messages if "match no known video" in m)
    assert "17 row(s) of 10 filename(s)" in unmatched
    assert "'Baby_cry_infant_cry' (lines 930, 931)" in unmatched
    assert "'KvIjsmANkxI_10_20`' (line 2449)" in unmatched
    # Without val ∪ test the malformed names are still caught.
    _, messages = record_warnings(read_segment_truth, old, test)
    assert "'Baby_cry_infant_cry' (lines 930, 931)" in messages[0]
    # The 3 broken rows belong to 2 test videos, which lose those segments.
    new_truth, _ = record_warnings(read_segment_truth, real(EVAL_AUDIO_CSV), test, val + test)
    differs = np.flatnonzero((new_truth != truth).any(axis=(1, 2)))
    assert sorted(test[i] for i in differs) == ["JfZEqeLZqWk_30_40", "KvIjsmANkxI_10_20"]
    assert int(new_truth.sum()) - int(truth.sum()) == 4 + 3 + 1


def test_real_truth_sanity():
    # Checked on the current files: ground truth is not a subset of the weak labels
    # (the published annotations disagree for a few videos), so count, don't assume.
    (val, val_labels), (test, test_labels) = real_val_test()
    expected = {  # split: audio sum, visual sum, videos with a gt class outside the weak label
        "val": (val, val_labels, 8089, 6115, 21),
        "test": (test, test_labels, 14576, 11789, 33),
    }
    for split, (names, labels, audio_sum, visual_sum, outside) in expected.items():
        audio, _ = record_warnings(read_segment_truth, real(EVAL_AUDIO_CSV), names, val + test)
        visual, _ = record_warnings(read_segment_truth, real(EVAL_VISUAL_CSV), names, val + test)
        assert (int(audio.sum()), int(visual.sum())) == (audio_sum, visual_sum), split
        present = audio.any(axis=2) | visual.any(axis=2)
        assert present.any(axis=1).all(), f"every {split} video has some ground truth"
        assert int((present & (labels == 0)).any(axis=1).sum()) == outside, split


def test_real_load_split_with_small_fake_features(tmp_path):
    # Real val annotations, features of a CLIP-like small dim to stay fast.
    names, _ = read_video_labels(real(LABEL_VAL_CSV))
    dirs, arrays = make_features(tmp_path / "feats", names,
                                 dims={"audio": 4, "frames": 4, "snippets": 4})
    paths = dataclasses.replace(LLPPaths.official(tmp_path), label_val=str(real(LABEL_VAL_CSV)),
                                eval_audio_csv=str(real(EVAL_AUDIO_CSV)),
                                eval_visual_csv=str(real(EVAL_VISUAL_CSV)))
    split, messages = record_warnings(
        load_split, paths, "val", cache=PackedFeatureCache(default_cache_dir(paths.audio_dir)))
    assert split.num_videos == 649 and split.feature_dims() == {"audio": 4, "frames": 4, "snippets": 4}
    assert int(split.gt_audio.sum()) == 8089 and int(split.gt_visual.sum()) == 6115
    unmatched = [m for m in messages if "match no known video" in m]
    assert "14 row(s) of 8 filename(s)" in unmatched[0] and "11 row(s) of 7 filename(s)" in unmatched[1]
    np.testing.assert_array_equal(split.snippets, arrays["snippets"])


def test_frames_pooled_at_load_are_segment_means_and_cached_apart(tmp_path):
    names = [f"{i:011d}_0_10" for i in range(3)]
    dirs, arrays = make_features(tmp_path, names)
    cache_dir = tmp_path / "cache"
    full = load_features(dirs, names, cache=PackedFeatureCache(str(cache_dir)))[0]
    pooled = load_features(dirs, names, cache=PackedFeatureCache(str(cache_dir)), pool_frames=True)[0]
    expected = arrays["frames"].reshape(3, 10, 8, 2048).mean(axis=2)
    assert pooled["frames"].shape == (3, 10, 2048) and full["frames"].shape == (3, 80, 2048)
    np.testing.assert_allclose(pooled["frames"], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(pooled["audio"], full["audio"])
    # both layouts stay cached side by side: later loads of either read no feature file
    assert (cache_dir / "videos_frames.npy").is_file() and (cache_dir / "videos_frames_pooled.npy").is_file()
    with mock.patch.object(feature_files_module.np, "load", wraps=np.load) as np_load:
        again = load_features(dirs, names, cache=PackedFeatureCache(str(cache_dir)), pool_frames=True)[0]
        full_again = load_features(dirs, names, cache=PackedFeatureCache(str(cache_dir)))[0]
    assert not [call for call in np_load.call_args_list if str(call.args[0]).startswith(dirs["frames"])]
    np.testing.assert_array_equal(again["frames"], pooled["frames"])
    np.testing.assert_array_equal(full_again["frames"], full["frames"])
