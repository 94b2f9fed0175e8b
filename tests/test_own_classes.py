"""Your own class list (--classes FILE): read and checked, carried through loading, models, tables,
exports and refinement flags, recorded in checkpoints, and a model never scored on other classes."""
import json
import os

import numpy as np
import pytest

from avvp_data.annotations import read_segment_truth, read_video_labels
from avvp_data.datasets import ClassListError, check_same_classes, describe_classes, read_class_list
from avvp_data.llp import CLASSES, EVAL_AUDIO_CSV, EVAL_VISUAL_CSV, LABEL_TEST_CSV, LABEL_TRAIN_CSV, LABEL_VAL_CSV
from avvp_data.synthetic_llp import generate_synthetic_llp
from conftest import main_fails, run_main, train_flags
from utils import checkpoint
from utils.errors import UserError

pytestmark = pytest.mark.e2e

OWN_CLASSES = 7


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def renamed_subset(llp_root, out_root, count):
    """An LLP-layout dataset with the `count` most frequent classes of `llp_root`'s training labels,
    renamed (e.g. 'Speech' -> 'own_speech') and put in reverse order, every other class dropped;
    videos left without a label are dropped too. The features are those of `llp_root`."""
    _, labels = read_video_labels(llp_root / "data" / LABEL_TRAIN_CSV)
    kept = [CLASSES[i] for i in np.argsort(-labels.sum(axis=0), kind="stable")[:count]][::-1]
    new_name = {name: f"own_{name.lower()}" for name in kept}
    (out_root / "data").mkdir(parents=True)
    os.symlink(llp_root / "feats", out_root / "feats")
    for name in (LABEL_TRAIN_CSV, LABEL_VAL_CSV, LABEL_TEST_CSV):
        header, *rows = (llp_root / "data" / name).read_text().splitlines()
        out = [header]
        for row in rows:
            filename, event_labels = row.split("\t")
            own = [new_name[label] for label in event_labels.split(",") if label in new_name]
            if own:
                out.append(f"{filename}\t{','.join(own)}")
        write_lines(out_root / "data" / name, out)
    for name in (EVAL_AUDIO_CSV, EVAL_VISUAL_CSV):
        header, *rows = (llp_root / "data" / name).read_text().splitlines()
        out = [header]
        for row in rows:
            fields = row.split("\t")
            if fields[3] in new_name:
                out.append("\t".join(fields[:3] + [new_name[fields[3]]]))
        write_lines(out_root / "data" / name, out)
    classes_file = write_lines(out_root / "classes.txt", ["# my classes", *(new_name[name] for name in kept)])
    return classes_file, tuple(new_name[name] for name in kept), kept


@pytest.fixture(scope="module")
def own_dataset(tmp_path_factory):
    llp_root = tmp_path_factory.mktemp("own_classes") / "llp"
    generate_synthetic_llp(str(llp_root), n_train=96, n_val=32, n_test=32, seed=0)
    out_root = llp_root.parent / "own"
    classes_file, classes, originals = renamed_subset(llp_root, out_root, OWN_CLASSES)
    return llp_root, out_root, classes_file, classes, originals


@pytest.fixture(scope="module")
def own_run(own_dataset, tmp_path_factory):
    _, out_root, classes_file, _, _ = own_dataset
    save_dir = tmp_path_factory.mktemp("own_run")
    summary = run_main(train_flags(out_root, save_dir, "--classes", str(classes_file), "--epochs", "4"))
    return save_dir, summary


# ---------------------------------------------------------------- the class-list file

def test_a_class_list_keeps_the_order_and_skips_comments_and_blank_lines(tmp_path):
    path = write_lines(tmp_path / "classes.txt", ["# birds first", "bird", "", "rain", "dog"])
    assert read_class_list(str(path)) == ("bird", "rain", "dog")
    assert describe_classes(("bird", "rain", "dog", "car", "train")) == "5 classes (bird, rain, dog, car, ...)"
    assert describe_classes(CLASSES) == "LLP's 25 classes"


@pytest.mark.parametrize("lines, problem", [
    (["bird", "rain", "bird"], "line 3: 'bird' is already on line 1"),
    (["bird", " rain"], "line 2: ' rain' has blanks around the name"),
    (["bird", "rain,snow"], "line 2: 'rain,snow' holds a comma or a tab"),
])
def test_a_broken_class_list_names_its_lines(tmp_path, lines, problem):
    path = write_lines(tmp_path / "classes.txt", lines)
    with pytest.raises(ClassListError, match="bad line") as error:
        read_class_list(str(path))
    assert problem in str(error.value) and str(path) in str(error.value)


def test_a_class_list_of_one_name_is_refused(tmp_path):
    with pytest.raises(ClassListError, match="1 class name"):
        read_class_list(str(write_lines(tmp_path / "classes.txt", ["bird"])))


def test_other_classes_or_another_order_are_named_both_ways():
    check_same_classes(("a", "b"), ("a", "b"), "model.pt")
    with pytest.raises(UserError, match=r"model.pt was trained on 2 classes \(a, b\), the data has "
                                        r"2 classes \(b, a\) \(the same names in another order\)"):
        check_same_classes(("a", "b"), ("b", "a"), "model.pt")
    with pytest.raises(UserError, match="the data has LLP's 25 classes"):
        check_same_classes(("a", "b"), CLASSES, "model.pt")


# ---------------------------------------------------------------- through a run

def test_the_label_files_are_read_in_the_class_lists_order(own_dataset):
    _, out_root, classes_file, classes, originals = own_dataset
    llp_root = own_dataset[0]
    filenames, own_labels = read_video_labels(out_root / "data" / LABEL_TEST_CSV, classes)
    _, llp_labels = read_video_labels(llp_root / "data" / LABEL_TEST_CSV)
    llp_rows = {name: row for name, row in zip(read_video_labels(llp_root / "data" / LABEL_TEST_CSV)[0], llp_labels)}
    columns = [CLASSES.index(name) for name in originals]
    assert own_labels.shape == (len(filenames), OWN_CLASSES)
    np.testing.assert_array_equal(own_labels, np.stack([llp_rows[name][columns] for name in filenames]))
    own_truth = read_segment_truth(out_root / "data" / EVAL_AUDIO_CSV, filenames, classes=classes)
    llp_truth = read_segment_truth(llp_root / "data" / EVAL_AUDIO_CSV, filenames)
    np.testing.assert_array_equal(own_truth, llp_truth[:, columns])


def test_a_run_on_own_classes_records_them_learns_and_reports_them(own_run, own_dataset, capsys):
    save_dir, summary = own_run
    _, out_root, classes_file, classes, _ = own_dataset
    best = checkpoint.load(checkpoint.best_path(str(save_dir), "DHHN", "overall"))
    assert best["model_config"]["classes"] == list(classes)
    assert best["model"]["head.fc_prob.weight"].shape[0] == OWN_CLASSES
    # the model learns: val's best overall score is well above its first epoch's
    history = [sum(epoch["val"][key] for key in ("seg_audio", "seg_visual")) for epoch in summary["history"]]
    assert max(history) > history[0] + 0.05, history
    export_dir = save_dir / "export"
    test = run_main(train_flags(out_root, save_dir, "--mode", "test", "--classes", str(classes_file),
                                "--export_dir", str(export_dir)))
    out = capsys.readouterr().out
    per_class = out[out.index("test: per-class F1"):].splitlines()
    assert [line.split()[0] for line in per_class[2:2 + OWN_CLASSES]] == list(classes)
    assert per_class[2 + OWN_CLASSES].startswith("class mean")
    with open(export_dir / "manifest.json") as handle:
        assert json.load(handle)["classes"] == list(classes)
    exported = (export_dir / "dhhn_dual_best_audio_best_visual_audio.csv").read_text().splitlines()[1:]
    assert exported and {line.split("\t")[3] for line in exported} <= set(classes)
    assert set(test["tables"]) == {"DHHN dual (best-audio + best-visual)", "HCMN best-overall"}


def test_a_model_of_own_classes_is_not_scored_on_llp(own_run, own_dataset, capsys):
    save_dir, _ = own_run
    llp_root = own_dataset[0]
    err = main_fails(train_flags(llp_root, save_dir, "--mode", "test"), capsys)
    assert f"{save_dir}/DHHN_best_audio.pt was trained on 7 classes (" in err
    assert "the data has LLP's 25 classes; pass the --classes file it was trained with" in err


def test_an_edited_class_list_is_refused_on_resume(own_dataset, tmp_path, capsys):
    _, out_root, classes_file, classes, _ = own_dataset
    flags = train_flags(out_root, tmp_path, "--classes", str(tmp_path / "classes.txt"), "--epochs", "2")
    write_lines(tmp_path / "classes.txt", list(classes))
    run_main(train_flags(out_root, tmp_path, "--classes", str(tmp_path / "classes.txt"), "--epochs", "1"))
    read_class_list.cache_clear()   # a new process reads the file again
    write_lines(tmp_path / "classes.txt", list(classes[::-1]))
    err = main_fails(flags + ["--resume"], capsys)
    assert "DHHN_last.pt was trained on 7 classes" in err and "(the same names in another order)" in err


def test_labels_of_a_class_not_in_the_list_are_named(own_dataset, tmp_path, capsys):
    _, out_root, classes_file, classes, _ = own_dataset
    short = write_lines(tmp_path / "classes.txt", list(classes[1:]))
    err = main_fails(train_flags(out_root, tmp_path, "--classes", str(short), "--epochs", "1"), capsys,
                     listing=True)
    assert f"unknown class {classes[0]!r}" in err
