"""The synthetic LFAV: the release's layout read back by avvp_data/lfav.py's readers, the planted truth
encoded exactly (inclusive offsets, weak labels as unions), determinism, and features that carry the
events of their own modality."""
import os
import warnings

import numpy as np
import pytest

from avvp_data.lfav import (
    FEATURE_FOLDERS,
    FEATURE_KINDS,
    LABEL_FOLDER,
    LFAV_CLASSES,
    LFAV_NUM_CLASSES,
    MODALITIES,
    SILENT_LABEL,
    TRUTH_FILES,
    WEAK_LABEL_FILES,
    read_split_weak_labels,
    read_truth,
    snippet_counts,
)
from avvp_data.synthetic_lfav import (
    COMPLETE_MARKER,
    SPLITS,
    TRUTH_FILE,
    event_masks,
    feature_dirs,
    generate_synthetic_lfav,
    is_complete,
    label_paths,
    load_planted_truth,
)

SMALL = dict(n_train=12, n_val=4, n_test=4, min_length=60, max_length=120, seed=2)
# what SMALL plants (pinned: a change of the recipe or of the streams shows here first)
SMALL_SNIPPETS = {"train": 1077, "val": 397, "test": 345}
SMALL_TRUTH_ROWS = {"train": {"audio": 45, "visual": 38}, "val": {"audio": 16, "visual": 15},
                    "test": {"audio": 31, "visual": 25}}
KIND_MODALITY = {"audio": "audio", "frames": "visual", "snippets": "visual"}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic_lfav")
    summary = generate_synthetic_lfav(path, **SMALL)
    assert not summary["skipped"]
    return path


def read_split(root, split):
    """{"weak": read_split_weak_labels(...), "counts": {filename: T}, "truth": {modality: {...}}} with
    lfav.py's readers; any LFAVDataWarning (or other warning) fails the test."""
    paths = label_paths(root)[split]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weak = read_split_weak_labels(paths["video"], paths["audio"], paths["visual"])
        counts = snippet_counts(feature_dirs(root)["audio"], list(weak["video"]))
        truth = ({modality: read_truth(paths[f"{modality}_truth"], counts) for modality in MODALITIES}
                 if split in TRUTH_FILES else None)
    return {"weak": weak, "counts": counts, "truth": truth}


def relative_files(root):
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names)


def runs(row):
    """[(onset, offset)] of the maximal runs of 1 in a (T,) row, offsets inclusive."""
    edges = np.diff(np.concatenate([[0], (np.asarray(row) > 0).astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist()))


def auc(scores, positive):
    """Area under the ROC curve (Mann-Whitney; the scores here are continuous, no ties)."""
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="stable")] = np.arange(1, len(scores) + 1)
    n_pos = int(positive.sum())
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (len(scores) - n_pos))


def planted_split(root, split):
    """(features {kind: (sum T, D)}, truth {modality: (35, sum T) bool}) of a split, videos concatenated."""
    names, lengths, events = load_planted_truth(root, split)
    feats = {kind: np.concatenate([np.load(os.path.join(feature_dirs(root)[kind], name + ".npy")) for name in names])
             for kind in FEATURE_KINDS}
    masks = event_masks(lengths, events)
    return feats, {modality: np.concatenate(masks[modality], axis=1).astype(bool) for modality in MODALITIES}


# ---------------------------------------------------------------------------------------------
# layout

def test_every_file_the_readers_expect_exists_and_nothing_else(root):
    names = {split: load_planted_truth(root, split)[0] for split in SPLITS}
    expected = {COMPLETE_MARKER, TRUTH_FILE}
    expected |= {os.path.join(LABEL_FOLDER, name) for files in WEAK_LABEL_FILES.values() for name in files.values()}
    expected |= {os.path.join(LABEL_FOLDER, name) for files in TRUTH_FILES.values() for name in files.values()}
    expected |= {os.path.join("feats", folder, name + ".npy") for folder in FEATURE_FOLDERS.values()
                 for split in SPLITS for name in names[split]}
    assert relative_files(root) == sorted(expected)
    assert len(expected) == 2 + 13 + 3 * 20
    assert FEATURE_FOLDERS == {"audio": "audio-feat-vggish-align", "frames": "visual-feat-res18-align",
                               "snippets": "visual-feat-r2plus1d-align"}   # src/scripts/train_s3.sh:4-6
    assert os.path.join(LABEL_FOLDER, "val", "val_weak_av.csv") in expected
    assert all(len(name) == 11 for split in SPLITS for name in names[split])
    assert len({name.lower() for split in SPLITS for name in names[split]}) == 20


def test_features_are_t_by_width_float32_with_one_t_per_video(root):
    for split in SPLITS:
        names, lengths, _ = load_planted_truth(root, split)
        assert len(names) == SMALL[f"n_{split}"]
        assert int(lengths.sum()) == SMALL_SNIPPETS[split]
        assert ((60 <= lengths) & (lengths <= 120)).all()
        for name, length in zip(names, lengths):
            for kind, (_, width) in FEATURE_KINDS.items():
                array = np.load(os.path.join(feature_dirs(root)[kind], name + ".npy"))
                assert array.shape == (length, width) and array.dtype == np.float32, (kind, name)
                assert np.isfinite(array).all()


def test_the_readers_read_it_without_warnings_and_the_lengths_agree(root):
    for split in SPLITS:
        names, lengths, _ = load_planted_truth(root, split)
        read = read_split(root, split)
        assert list(read["weak"]["video"]) == names   # the weak files list the videos in planted order
        assert read["counts"] == dict(zip(names, lengths.tolist()))
        if read["truth"] is not None:
            for modality in MODALITIES:
                assert {name: array.shape for name, array in read["truth"][modality].items()} == {
                    name: (LFAV_NUM_CLASSES, int(length)) for name, length in zip(names, lengths)}


# ---------------------------------------------------------------------------------------------
# the planted truth, encoded exactly

def test_weak_labels_are_the_unions_of_the_planted_events(root):
    silent_rows = 0
    for split in SPLITS:
        names, lengths, events = load_planted_truth(root, split)
        weak = read_split(root, split)["weak"]
        planted = np.zeros((2, len(names), LFAV_NUM_CLASSES), dtype=np.float32)
        planted[events[:, 1], events[:, 0], events[:, 2]] = 1.0
        for i, name in enumerate(names):
            np.testing.assert_array_equal(weak["audio"][name], planted[0, i])
            np.testing.assert_array_equal(weak["visual"][name], planted[1, i])
            np.testing.assert_array_equal(weak["video"][name], np.maximum(planted[0, i], planted[1, i]))
            assert weak["video"][name].any()   # every video has an event
        with open(label_paths(root)[split]["audio"]) as handle:
            audio_lines = handle.read().splitlines()[1:]
        silent_rows += sum(line.endswith("\t" + SILENT_LABEL) for line in audio_lines)
        assert [line.endswith("\t" + SILENT_LABEL) for line in audio_lines] == [not row.any() for row in planted[0]]
    assert silent_rows == 1   # one train video of SMALL has no audio event


def test_truth_rows_are_the_planted_events_with_inclusive_offsets(root):
    touching_the_end = one_snippet = 0
    for split in TRUTH_FILES:
        names, lengths, events = load_planted_truth(root, split)
        truth = read_split(root, split)["truth"]
        for m, modality in enumerate(MODALITIES):
            rows = events[events[:, 1] == m]
            assert len(rows) == SMALL_TRUTH_ROWS[split][modality]
            with open(label_paths(root)[split][f"{modality}_truth"]) as handle:
                lines = handle.read().splitlines()
            assert lines[0] == "filename\tonset\toffset\tevent_labels"
            assert lines[1:] == [f"{names[v]}\t{onset}\t{offset}\t{LFAV_CLASSES[c]}" for v, _, c, onset, offset in rows]
            for video, _, cls, onset, offset in rows:
                row = truth[modality][names[video]][cls]
                # a row a..b reads back as exactly the snippets a..b: nothing before a or after b
                assert row[onset:offset + 1].all()
                assert onset == 0 or row[onset - 1] == 0
                assert offset == lengths[video] - 1 or row[offset + 1] == 0
                touching_the_end += int(offset == lengths[video] - 1)
                one_snippet += int(onset == offset)
            # and the read-back truth has no snippet that no row names: its runs are the rows
            read_rows = [(v, c, *run) for v, name in enumerate(names) for c in range(LFAV_NUM_CLASSES)
                         for run in runs(truth[modality][name][c])]
            assert read_rows == [(v, c, onset, offset) for v, _, c, onset, offset in rows]
    assert (touching_the_end, one_snippet) == (5, 1)   # SMALL covers both edges of the convention


# ---------------------------------------------------------------------------------------------
# determinism, completion marker, parameters

def test_same_seed_same_bytes_other_seed_other_content(root, tmp_path):
    again = tmp_path / "again"
    generate_synthetic_lfav(again, **SMALL)
    files = relative_files(root)
    assert relative_files(again) == files
    for name in files:
        assert (root / name).read_bytes() == (again / name).read_bytes(), name

    other = tmp_path / "other"
    generate_synthetic_lfav(other, **{**SMALL, "seed": SMALL["seed"] + 1})
    for split in SPLITS:
        for kind in ("video", "audio", "visual"):
            assert ((root / LABEL_FOLDER / WEAK_LABEL_FILES[split][kind]).read_bytes()
                    != (other / LABEL_FOLDER / WEAK_LABEL_FILES[split][kind]).read_bytes())
    feature_files = {name for name in relative_files(other) if name.endswith(".npy")}
    assert len(feature_files) == 60 and feature_files.isdisjoint(files)


def test_a_complete_root_is_skipped_and_other_parameters_regenerate_it(tmp_path):
    small = {**SMALL, "n_train": 2, "n_val": 1, "n_test": 1}
    first = generate_synthetic_lfav(tmp_path, **small)
    assert is_complete(tmp_path, **small) and not is_complete(tmp_path, **{**small, "seed": 3})
    assert generate_synthetic_lfav(tmp_path, **small)["skipped"]
    second = generate_synthetic_lfav(tmp_path, **{**small, "seed": 3, "max_length": 70})
    assert not second["skipped"] and second["snippets"] != first["snippets"]
    names = [name for split in SPLITS for name in load_planted_truth(tmp_path, split)[0]]
    assert sorted(os.listdir(feature_dirs(tmp_path)["audio"])) == sorted(name + ".npy" for name in names)
    assert not is_complete(tmp_path, **small) and is_complete(tmp_path, **{**small, "seed": 3, "max_length": 70})


def test_bad_parameters_and_foreign_folders_are_refused(tmp_path):
    with pytest.raises(ValueError, match="min_length <= max_length"):
        generate_synthetic_lfav(tmp_path / "a", 1, 1, 1, min_length=50, max_length=40)
    with pytest.raises(ValueError, match="min_length"):
        generate_synthetic_lfav(tmp_path / "a", 1, 1, 1, min_length=0)
    foreign = tmp_path / "foreign" / LABEL_FOLDER / "train"
    foreign.mkdir(parents=True)
    (foreign / "train_weakly.csv").write_text("filename\tevent_labels\n")
    with pytest.raises(FileExistsError, match="did not write"):
        generate_synthetic_lfav(tmp_path / "foreign", 1, 1, 1)
    assert (foreign / "train_weakly.csv").read_text() == "filename\tevent_labels\n"


# ---------------------------------------------------------------------------------------------
# the features carry the events, each kind those of its own modality

def test_features_carry_the_events_of_their_own_modality(root):
    """A probe learnt on train (per class: mean of event snippets minus mean of the others) ranks the
    val+test snippets of that class's events of its modality far above chance (AUC 0.5), and does
    not find the class's events of the other modality alone (the snippets where only the other
    modality has it), which sit near chance."""
    train_feats, train_truth = planted_split(root, "train")
    evals = [planted_split(root, split) for split in TRUTH_FILES]
    feats = {kind: np.concatenate([e[0][kind] for e in evals]) for kind in FEATURE_KINDS}
    truth = {modality: np.concatenate([e[1][modality] for e in evals], axis=1) for modality in MODALITIES}
    own_auc, cross_auc = {}, {}
    for kind, modality in KIND_MODALITY.items():
        other = MODALITIES[1 - MODALITIES.index(modality)]
        own_auc[kind], cross_auc[kind] = [], []
        for c in range(LFAV_NUM_CLASSES):
            positive = truth[modality][c]
            if not train_truth[modality][c].any() or not positive.any() or positive.all():
                continue
            direction = (train_feats[kind][train_truth[modality][c]].mean(axis=0)
                         - train_feats[kind][~train_truth[modality][c]].mean(axis=0))
            scores = feats[kind] @ direction
            own_auc[kind].append(auc(scores, positive))
            only_other, neither = truth[other][c] & ~positive, ~truth[other][c] & ~positive
            if only_other.sum() >= 5:
                chosen = only_other | neither
                cross_auc[kind].append(auc(scores[chosen], only_other[chosen]))
    # measured for SMALL: classes 10 / 9 / 9, mean AUC 0.968 / 0.980 / 0.995, min 0.848 / 0.948 / 0.973
    assert [len(own_auc[kind]) for kind in KIND_MODALITY] == [10, 9, 9]
    for kind in KIND_MODALITY:
        assert np.mean(own_auc[kind]) > 0.93, (kind, own_auc[kind])
        assert min(own_auc[kind]) > 0.8, (kind, own_auc[kind])
    # measured: 3 + 2 + 2 (class, kind) cases, mean AUC 0.529 (0.555 / 0.465 / 0.555 per kind)
    pooled = [value for kind in KIND_MODALITY for value in cross_auc[kind]]
    assert [len(cross_auc[kind]) for kind in KIND_MODALITY] == [3, 2, 2]
    assert 0.3 < np.mean(pooled) < 0.7
    assert min(np.mean(own_auc[kind]) for kind in KIND_MODALITY) - np.mean(pooled) > 0.4
