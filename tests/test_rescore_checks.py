"""scripts/rescore.py checks every input before it scores anything (issue 24): an export's row files
against its manifest, --label_csv and the eval files against the export's videos, a --tune_on
export against --export_dir, --out_json and eval files left at their defaults; each mismatch is one
line naming the files, exit status 2. Then every rule on a trained model's export, whose
global_prob exceeds 1."""
import json
import shutil
import types

import pytest
import torch

from avvp_data.llp import CLASSES, NUM_CLASSES
from conftest import data_flags, fake_outputs, load_test_split, run_main
from dataloader import LLPPaths, load_split
from reporting.decision_rules import score_rule, tune_visual_thresholds
from reporting.export import MANIFEST_FILE, export_predictions, load_predictions, rescore_event_files
from scripts import rescore
from utils.errors import LLPDataWarning
from utils.eval_metrics import evaluate_split, segment_predictions

HEADLINE = [f"{level}_{column}" for level in ("seg", "evt") for column in ("audio", "visual", "av", "type", "event")]
# more videos than dataloader.max_videos_without_truth tolerates without eval rows (5)
TEST_NAMES = [f"test{i:07d}_0_10" for i in range(8)]
VAL_NAMES = [f"vald{i:07d}_0_10" for i in range(8)]
ROWS = ("Model A", "Model B")   # files model_a*, model_b*


def write_export(folder, split_name, filenames, seed, rows=ROWS):
    split = types.SimpleNamespace(name=split_name, filenames=filenames, classes=CLASSES)
    export_predictions(str(folder), split, {name: (fake_outputs(len(filenames), seed + number), "modality")
                                            for number, name in enumerate(rows)})
    return str(folder)


def write_tsv(path, header, rows):
    path.write_text("\n".join([header] + ["\t".join(map(str, row)) for row in rows]) + "\n")
    return str(path)


def write_eval_csv(path, filenames, shift):
    rows = [(name, number % 7, number % 7 + 3, CLASSES[(number + shift) % NUM_CLASSES])
            for number, name in enumerate(filenames)]
    return write_tsv(path, "filename\tonset\toffset\tevent_labels", rows)


def write_label_csv(path, filenames):
    return write_tsv(path, "filename\tevent_labels", [(name, "Speech") for name in filenames])


def event_videos(csv_path):
    """The distinct videos an eval-format file names."""
    return {line.split("\t")[0] for line in open(csv_path).read().splitlines()[1:]}


@pytest.fixture
def exports(tmp_path):
    """A test and a val export of the same two rows, and eval files covering both splits."""
    return types.SimpleNamespace(
        test=write_export(tmp_path / "test_export", "test", TEST_NAMES, seed=0),
        val=write_export(tmp_path / "val_export", "val", VAL_NAMES, seed=10),
        audio=write_eval_csv(tmp_path / "eval_audio.csv", TEST_NAMES + VAL_NAMES, shift=0),
        visual=write_eval_csv(tmp_path / "eval_visual.csv", TEST_NAMES + VAL_NAMES, shift=3))


def eval_flags(exports):
    return ["--eval_audio_csv", exports.audio, "--eval_visual_csv", exports.visual]


def refusal(argv, capsys):
    """The whole stderr of scripts/rescore.py for `argv`, after checking exit status 2 and that
    nothing was printed (no table before the error)."""
    assert rescore.cli(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def run_rescore(argv):
    return rescore.main(rescore.get_args_parser().parse_args(argv))


def mixed_copy(exports, tmp_path, source_dir, files):
    """A copy of the test export with `files` taken from `source_dir` (another export)."""
    mixed = tmp_path / "mixed"
    shutil.copytree(exports.test, mixed)
    for name in files:
        shutil.copy(f"{source_dir}/{name}", mixed / name)
    return str(mixed)


# ---------------------------------------------------------------- videos of another split

@pytest.mark.parametrize("rule", [[], ["--rule", "coleaf"]])
def test_a_label_csv_of_other_videos_is_refused(exports, tmp_path, capsys, rule):
    val_labels = write_label_csv(tmp_path / "val_pd.csv", VAL_NAMES)
    assert refusal(["--export_dir", exports.test, "--label_csv", val_labels, *rule, *eval_flags(exports)], capsys) == (
        f"error: --label_csv {val_labels}: its 8 videos are not the 8 of the 'test' export "
        f"{exports.test}/manifest.json: 8 of its videos are not in the export (e.g. 'vald0000000_0_10'); "
        "8 of the export's are not in it (e.g. 'test0000000_0_10')\n")
    part = write_label_csv(tmp_path / "part_pd.csv", TEST_NAMES[:5])
    assert refusal(["--export_dir", exports.test, "--label_csv", part, *rule, *eval_flags(exports)], capsys) == (
        f"error: --label_csv {part}: its 5 videos are not the 8 of the 'test' export "
        f"{exports.test}/manifest.json: 3 of the export's are not in it (e.g. 'test0000005_0_10')\n")


@pytest.mark.parametrize("rule", [[], ["--rule", "coleaf"]])
def test_eval_files_of_another_split_are_refused(exports, tmp_path, capsys, rule):
    audio = write_eval_csv(tmp_path / "val_audio.csv", VAL_NAMES, shift=0)
    visual = write_eval_csv(tmp_path / "val_visual.csv", VAL_NAMES, shift=3)
    argv = ["--export_dir", exports.test, *rule, "--eval_audio_csv", audio, "--eval_visual_csv", visual]
    assert refusal(argv, capsys) == (
        f"error: --eval_audio_csv {audio} and --eval_visual_csv {visual}: 8 of the 8 videos of the 'test' export "
        f"{exports.test} have no row in either (e.g. 'test0000000_0_10'); give the eval files of that split\n")


def test_a_few_videos_without_eval_rows_are_warned_about_and_scored(exports, tmp_path, capsys):
    audio = write_eval_csv(tmp_path / "audio.csv", TEST_NAMES[1:], shift=0)
    visual = write_eval_csv(tmp_path / "visual.csv", TEST_NAMES[1:], shift=3)
    with pytest.warns(LLPDataWarning, match="1 of the 8 videos of the 'test' export .* have no row in either"):
        results = run_rescore(["--export_dir", exports.test, "--eval_audio_csv", audio, "--eval_visual_csv", visual])
    files = json.load(open(f"{exports.test}/{MANIFEST_FILE}"))["rows"]["Model A"]
    expected = rescore_event_files(f"{exports.test}/{files['audio_csv']}", f"{exports.test}/{files['visual_csv']}",
                                   audio, visual, TEST_NAMES)
    for key in HEADLINE:
        assert results["Model A"][key] == expected[key], key


# ---------------------------------------------------------------- row files that disagree with the manifest

@pytest.mark.parametrize("rule", [[], ["--rule", "coleaf"]])
def test_row_files_of_another_split_are_refused(exports, tmp_path, capsys, rule):
    mixed = mixed_copy(exports, tmp_path, exports.val, ["model_b.npz", "model_b_audio.csv", "model_b_visual.csv"])
    assert refusal(["--export_dir", mixed, *rule, *eval_flags(exports)], capsys) == (
        f"error: --export_dir {mixed}: {mixed}/model_b.npz: holds predictions of split 'val', but "
        f"{mixed}/manifest.json is an export of split 'test'\n")


def test_an_event_file_of_another_split_is_refused(exports, tmp_path, capsys):
    mixed = mixed_copy(exports, tmp_path, exports.val, ["model_b_audio.csv"])
    stray = event_videos(f"{exports.val}/model_b_audio.csv")
    assert refusal(["--export_dir", mixed, *eval_flags(exports)], capsys) == (
        f"error: --export_dir {mixed}: {mixed}/model_b_audio.csv: names {len(stray)} video(s) outside the 8 of "
        f"the 'test' export {mixed}/manifest.json, e.g. {min(stray)!r}\n")


@pytest.mark.parametrize("rule", [[], ["--rule", "coleaf"]])
def test_a_row_file_of_another_run_of_the_same_split_is_refused(exports, tmp_path, capsys, rule):
    other_run = write_export(tmp_path / "other_run", "test", TEST_NAMES, seed=5)
    mixed = mixed_copy(exports, tmp_path, other_run, ["model_b.npz"])
    assert refusal(["--export_dir", mixed, *rule, *eval_flags(exports)], capsys) == (
        f"error: --export_dir {mixed}: {mixed}/model_b.npz: not the file that {mixed}/manifest.json recorded "
        "(its sha256 differs): changed or replaced after the export\n")


def test_an_npz_filed_under_another_row_is_refused(exports, tmp_path, capsys):
    mixed = tmp_path / "swapped"
    shutil.copytree(exports.test, mixed)
    manifest = json.loads((mixed / MANIFEST_FILE).read_text())
    rows = manifest["rows"]
    rows["Model A"]["npz"], rows["Model B"]["npz"] = rows["Model B"]["npz"], rows["Model A"]["npz"]
    (mixed / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert refusal(["--export_dir", str(mixed), "--rule", "coleaf", *eval_flags(exports)], capsys) == (
        f"error: --export_dir {mixed}: {mixed}/model_b.npz: holds row 'Model B', but {mixed}/manifest.json lists it "
        "for row 'Model A'\n")


def as_format_1(export_dir):
    """Rewrite an export's manifest as exports wrote it before format 2 (split, num_videos, rows)."""
    path = f"{export_dir}/{MANIFEST_FILE}"
    manifest = json.load(open(path))
    with open(path, "w") as handle:
        json.dump({key: manifest[key] for key in ("split", "num_videos", "rows")}, handle)


def test_an_old_manifest_is_read_with_a_note_and_still_checked(exports, tmp_path, capsys):
    expected = run_rescore(["--export_dir", exports.test, *eval_flags(exports)])
    capsys.readouterr()
    old = tmp_path / "old_export"
    shutil.copytree(exports.test, old)
    as_format_1(old)
    assert rescore.cli(["--export_dir", str(old), *eval_flags(exports)]) == 0
    captured = capsys.readouterr()
    assert captured.err == (f"note: {old}/manifest.json: written before exports recorded their files' checksums, "
                            "so its row files are checked against one another and its split only (export again "
                            "to check them fully)\n")
    assert captured.out.count("videos)") == 2
    results = run_rescore(["--export_dir", str(old), *eval_flags(exports)])
    for row in ROWS:
        for key in HEADLINE:
            assert results[row][key] == expected[row][key], (row, key)
    capsys.readouterr()

    mixed = mixed_copy(exports, tmp_path, exports.val, ["model_b.npz"])
    as_format_1(mixed)
    assert refusal(["--export_dir", mixed, *eval_flags(exports)], capsys) == (
        f"error: --export_dir {mixed}: {mixed}/model_b.npz: holds predictions of split 'val', but "
        f"{mixed}/manifest.json is an export of split 'test'\n")


# ---------------------------------------------------------------- --tune_on

def test_a_tune_on_export_whose_rows_differ_is_refused_before_any_table(exports, tmp_path, capsys):
    one_row = write_export(tmp_path / "val_one_row", "val", VAL_NAMES, seed=10, rows=ROWS[:1])
    argv = ["--export_dir", exports.test, "--rule", "cmpae", "--tune_on", one_row, *eval_flags(exports)]
    assert refusal(argv, capsys) == (
        f"error: --tune_on {one_row}: its rows ('Model A') are not those of --export_dir {exports.test} "
        "('Model A', 'Model B'); the thresholds of a row are tuned on the same row\n")


def test_a_tune_on_export_holding_a_test_row_is_refused(exports, tmp_path, capsys):
    mixed_val = tmp_path / "mixed_val"
    shutil.copytree(exports.val, mixed_val)
    shutil.copy(f"{exports.test}/model_a.npz", mixed_val / "model_a.npz")
    argv = ["--export_dir", exports.test, "--rule", "cmpae", "--tune_on", str(mixed_val), *eval_flags(exports)]
    assert refusal(argv, capsys) == (
        f"error: --tune_on {mixed_val}: {mixed_val}/model_a.npz: holds predictions of split 'test', but "
        f"{mixed_val}/manifest.json is an export of split 'val'\n")


# ---------------------------------------------------------------- flags refused before any work

def test_an_out_json_under_a_file_or_naming_a_folder_is_refused_first(exports, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    out_json = a_file / "deeper" / "r.json"
    assert refusal(["--export_dir", exports.test, "--out_json", str(out_json), *eval_flags(exports)], capsys) == (
        f"error: --out_json {out_json}: {a_file} is a file, not a folder\n")
    assert refusal(["--export_dir", exports.test, "--out_json", str(tmp_path), *eval_flags(exports)], capsys) == (
        f"error: --out_json {tmp_path}: is a folder; give the name of a .json file\n")


def test_eval_files_left_at_their_defaults_outside_the_llp_root(exports, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for rule in ([], ["--rule", "coleaf"]):
        assert refusal(["--export_dir", exports.test, *rule], capsys) == (
            "error: --eval_audio_csv and --eval_visual_csv not given, and their defaults data/AVVP_eval_audio.csv "
            f"and data/AVVP_eval_visual.csv are not under the current folder ({tmp_path}): pass --eval_audio_csv "
            "LLP_ROOT/data/AVVP_eval_audio.csv --eval_visual_csv LLP_ROOT/data/AVVP_eval_visual.csv\n")
    assert refusal(["--export_dir", exports.test, "--eval_audio_csv", exports.audio], capsys) == (
        "error: --eval_visual_csv not given, and its default data/AVVP_eval_visual.csv is not under the current "
        f"folder ({tmp_path}): pass --eval_visual_csv LLP_ROOT/data/AVVP_eval_visual.csv\n")
    missing = str(tmp_path / "nowhere.csv")
    assert refusal(["--export_dir", exports.test, "--eval_audio_csv", exports.audio, "--eval_visual_csv", missing],
                   capsys) == f"error: --eval_visual_csv {missing}: no such file\n"
    assert refusal(["--export_dir", exports.test, "--label_csv", missing, *eval_flags(exports)], capsys) == (
        f"error: --label_csv {missing}: no such file\n")


def test_a_pair_of_event_files_is_scored_as_before(exports, tmp_path, capsys):
    """--pred_audio_csv / --pred_visual_csv have no manifest: scored on the videos of --label_csv."""
    labels = write_label_csv(tmp_path / "test_pd.csv", TEST_NAMES[::-1])
    audio_csv, visual_csv = f"{exports.test}/model_a_audio.csv", f"{exports.test}/model_a_visual.csv"
    results = run_rescore(["--pred_audio_csv", audio_csv, "--pred_visual_csv", visual_csv, "--label_csv", labels,
                           *eval_flags(exports)])
    expected = rescore_event_files(audio_csv, visual_csv, exports.audio, exports.visual, TEST_NAMES)
    for key in HEADLINE:
        assert results["model_a_audio.csv"][key] == pytest.approx(expected[key], abs=1e-12), key
    assert "model_a_audio.csv (8 videos)" in capsys.readouterr().out


def test_a_pair_of_event_files_of_another_split_is_refused(exports, tmp_path, capsys):
    """Without a manifest, the videos the files predict are compared with --label_csv's."""
    labels = write_label_csv(tmp_path / "val_pd.csv", VAL_NAMES)
    audio_csv, visual_csv = f"{exports.test}/model_a_audio.csv", f"{exports.test}/model_a_visual.csv"
    predicted = event_videos(audio_csv)
    err = refusal(["--pred_audio_csv", audio_csv, "--pred_visual_csv", visual_csv, "--label_csv", labels,
                   *eval_flags(exports)], capsys)
    assert err.startswith(f"error: --pred_audio_csv {audio_csv}: {len(predicted)} of the {len(predicted)} videos it "
                          f"predicts are not in --label_csv {labels} (e.g. {min(predicted)}")
    assert err.endswith("predictions of another split?\n") and err.count("\n") == 1


# ---------------------------------------------------------------- a trained model's exports

@pytest.fixture(scope="module")
def trained_exports(trained_run, synthetic_root, tmp_path_factory):
    """{split: (export folder, run summary)} of val and test of the session's trained DHHN run (6 epochs:
    a 1-epoch model's global_prob stays under 1 on the synthetic LLP, a 6-epoch one's exceeds it)."""
    save_dir, _ = trained_run
    folder = tmp_path_factory.mktemp("trained_exports")
    flags = data_flags(synthetic_root) + ["--model_save_dir", str(save_dir), "--device", "cpu", "--no-log"]
    return {split: (folder / split, run_main(flags + ["--mode", split, "--export_dir", str(folder / split)]))
            for split in ("val", "test")}


def exported_rows(export_dir):
    """{row name: torch outputs} of an export, read with reporting.export only."""
    rows = json.loads((export_dir / MANIFEST_FILE).read_text())["rows"]
    return {name: {key: torch.from_numpy(value) for key, value in load_predictions(export_dir / files["npz"]).items()
                   if key in ("audio_prob", "visual_prob", "global_prob", "frame_prob")}
            for name, files in rows.items()}


def coleaf_by_hand(outputs):
    """CoLeaF's decisions (PROTOCOL.md §14): segments >= 0.25, a_prob / v_prob >= 0.52; (N, 25, 10) each."""
    frame_on = outputs["frame_prob"].numpy() >= 0.25
    audio = frame_on[:, :, 0, :] & (outputs["audio_prob"].numpy() >= 0.52)[:, None, :]
    visual = frame_on[:, :, 1, :] & (outputs["visual_prob"].numpy() >= 0.52)[:, None, :]
    return audio.transpose(0, 2, 1), visual.transpose(0, 2, 1)


def test_every_rule_scores_a_trained_models_export(trained_exports, synthetic_root, capsys):
    test_dir, test_summary = trained_exports["test"]
    val_dir, _ = trained_exports["val"]
    rows = exported_rows(test_dir)
    assert max(float(outputs["global_prob"].max()) for outputs in rows.values()) > 1   # the case refused before
    test_split = load_test_split(synthetic_root)
    truth = (test_split.gt_audio, test_split.gt_visual)
    flags = ["--export_dir", str(test_dir), "--eval_audio_csv", f"{synthetic_root}/data/AVVP_eval_audio.csv",
             "--eval_visual_csv", f"{synthetic_root}/data/AVVP_eval_visual.csv"]
    references = {
        "dhhn": {name: test_summary["tables"][name] for name in rows},   # the run's own table
        "han": {name: evaluate_split(*segment_predictions(outputs, "global"), *truth)
                for name, outputs in rows.items()},
        "coleaf": {name: evaluate_split(*coleaf_by_hand(outputs), *truth) for name, outputs in rows.items()},
    }
    for rule, expected in references.items():
        results = run_rescore(flags + ["--rule", rule])
        for name in rows:
            for key in HEADLINE:
                assert results[name][key] == pytest.approx(expected[name][key], abs=1e-12), (rule, name, key)

    val_split = load_split(LLPPaths.official(synthetic_root), "val")
    val_rows = exported_rows(val_dir)
    results = run_rescore(flags + ["--rule", "cmpae", "--tune_on", str(val_dir)])
    for name, outputs in rows.items():
        val_outputs = {key: value.numpy() for key, value in val_rows[name].items()}
        thresholds = tune_visual_thresholds(val_outputs, val_split.gt_audio, val_split.gt_visual, "val")
        expected = score_rule({key: value.numpy() for key, value in outputs.items()}, *truth, "cmpae", thresholds)
        for key in HEADLINE:
            assert results[name][key] == pytest.approx(expected[key], abs=1e-12), (name, key)
    capsys.readouterr()


def test_a_trained_test_export_with_the_val_files_is_refused(trained_exports, synthetic_root, tmp_path, capsys):
    test_dir, test_summary = trained_exports["test"]
    data = f"{synthetic_root}/data"
    eval_files = ["--eval_audio_csv", f"{data}/AVVP_eval_audio.csv",
                  "--eval_visual_csv", f"{data}/AVVP_eval_visual.csv"]
    num_test, num_val = test_summary["num_videos"], trained_exports["val"][1]["num_videos"]
    message = refusal(["--export_dir", str(test_dir), "--label_csv", f"{data}/AVVP_val_pd.csv", *eval_files], capsys)
    assert message.startswith(f"error: --label_csv {data}/AVVP_val_pd.csv: its {num_val} videos are not the "
                              f"{num_test} of the 'test' export {test_dir}/manifest.json: {num_val} of its videos "
                              "are not in the export (e.g. ")
    val_names = load_split(LLPPaths.official(synthetic_root), "val", with_truth=False).filenames
    val_only = []
    for modality in ("audio", "visual"):   # the eval files cut down to the val videos' rows
        lines = open(f"{data}/AVVP_eval_{modality}.csv").read().splitlines()
        path = tmp_path / f"val_{modality}.csv"
        path.write_text("\n".join(lines[:1] + [line for line in lines[1:] if line.split("\t")[0] in val_names]) + "\n")
        val_only += [f"--eval_{modality}_csv", str(path)]
    message = refusal(["--export_dir", str(test_dir), "--rule", "han", *val_only], capsys)
    assert message.startswith(f"error: --eval_audio_csv {tmp_path}/val_audio.csv and --eval_visual_csv "
                              f"{tmp_path}/val_visual.csv: {num_test} of the {num_test} videos of the 'test' export "
                              f"{test_dir} have no row in either")
