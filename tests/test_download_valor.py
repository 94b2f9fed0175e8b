"""scripts/download_valor_features.py, offline: tiny CLIP.zip / CLAP.zip for a tiny LLP list, --from,
validation of every file (all problems in one line), zip-slip refusal, --check_only, and the
Hugging Face download path with huggingface_hub missing or stood in for."""
import io
import os
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest

from avvp_data.llp import (
    CLAP_FEATURE_SHAPE,
    CLIP_FEATURE_SHAPE,
    LABEL_COLUMNS,
    LABEL_FULL_CSV,
    LABEL_TEST_CSV,
    LABEL_TRAIN_CSV,
    LABEL_VAL_CSV,
    PSEUDO_LABEL_SHAPE,
    VALOR_ARCHIVES,
    VALOR_HF_REPO,
    VALOR_SETS,
)
from conftest import script_path
from scripts import download_valor_features as download_valor

# 11-character YouTube ids, '-' and '_' included as in the real list
VIDEO_IDS = ("AAAAAAAAAA1", "b_c-DEFGHI2", "CCCCCCCCCC3")
SHAPES = {"CLIP": {"features": CLIP_FEATURE_SHAPE, "segment_pseudo_labels": PSEUDO_LABEL_SHAPE},
          "CLAP": {"features": CLAP_FEATURE_SHAPE, "segment_pseudo_labels": PSEUDO_LABEL_SHAPE}}


def _main(capsys, *args):
    """(exit code, stdout, stderr) of the script's main() run in-process."""
    code = download_valor.main(download_valor.get_args_parser().parse_args(list(args)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_label_csv(path, video_ids):
    """A label CSV in the published format: tab-separated, filenames `<id>_<start>_<end>`."""
    rows = ["\t".join(LABEL_COLUMNS)] + [f"{video_id}_{10 * i}_{10 * i + 10}\tSpeech,Dog"
                                         for i, video_id in enumerate(video_ids)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture
def llp_root(tmp_path):
    root = tmp_path / "llp"
    write_label_csv(root / "data" / LABEL_FULL_CSV, VIDEO_IDS)
    return root


def valor_array(set_name, folder, seed=0):
    """A valid array: float32 features, int64 0/1 pseudo-labels (as VALOR saves them)."""
    rng = np.random.default_rng(seed)
    shape = SHAPES[set_name][folder]
    if folder == "features":
        return rng.standard_normal(shape).astype(np.float32)
    return (rng.random(shape) < 0.2).astype(np.int64)


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def make_zip(path, set_name, video_ids=VIDEO_IDS, prefix=None, replace=None, extra_members=()):
    """A zip like VALOR's: <prefix>{features,segment_pseudo_labels}/<id>.npy, prefix `<set>/` by
    default. `replace`: {(folder, id): array or None (left out)}; `extra_members`: (name, bytes)."""
    prefix = f"{set_name}/" if prefix is None else prefix
    replace = replace or {}
    with zipfile.ZipFile(path, "w") as zip_file:
        for folder in SHAPES[set_name]:
            for i, video_id in enumerate(video_ids):
                array = replace.get((folder, video_id), valor_array(set_name, folder, i))
                if array is not None:
                    zip_file.writestr(f"{prefix}{folder}/{video_id}.npy", npy_bytes(array))
        for name, data in extra_members:
            zip_file.writestr(zipfile.ZipInfo(name), data)
    return path


@pytest.fixture
def source(tmp_path):
    """A --from folder with valid CLIP.zip and CLAP.zip."""
    folder = tmp_path / "source"
    folder.mkdir()
    for name in VALOR_SETS:
        make_zip(folder / VALOR_ARCHIVES[name], name)
    return folder


def assert_installed(root, set_names=VALOR_SETS):
    for name in set_names:
        for folder, shape in SHAPES[name].items():
            assert sorted(os.listdir(root / name / folder)) == sorted(f"{i}.npy" for i in VIDEO_IDS)
            for video_id in VIDEO_IDS:
                assert np.load(root / name / folder / f"{video_id}.npy").shape == shape


def hidden_leftovers(root):
    """Staging or set-aside folders left in the LLP root."""
    return [name for name in os.listdir(root) if name.startswith(".")]


def test_from_zips_installs_both_sets_then_leaves_them_alone(llp_root, source, tmp_path, capsys):
    code, out, err = _main(capsys, "--llp_root", str(llp_root), "--from", str(source))
    assert code == 0, err
    assert_installed(llp_root)
    assert sorted(os.listdir(llp_root)) == ["CLAP", "CLIP", "data"]   # no staging folder left behind
    assert f"CLIP/features: 3 of 3 videos valid, shape {CLIP_FEATURE_SHAPE}" in out
    assert f"CLAP/features: 3 of 3 videos valid, shape {CLAP_FEATURE_SHAPE}" in out
    assert "CLIP: from" in out and "installed in" in out
    # valid sets in place are not fetched again (the --from folder is not even looked at)
    code, out, err = _main(capsys, "--llp_root", str(llp_root), "--from", str(tmp_path / "nowhere"))
    assert code == 0, err
    assert out.count("present and valid, left alone") == 2


def test_command_line(llp_root, source, tmp_path):
    """The command line end to end (one subprocess), --llp_root from $LLP_ROOT."""
    env = dict(os.environ, LLP_ROOT=str(llp_root))
    result = subprocess.run([sys.executable, script_path("download_valor_features"), "--from", str(source)],
                            capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert_installed(llp_root)


def test_problems_are_reported_together_and_nothing_is_installed(llp_root, tmp_path, capsys):
    source = tmp_path / "source"
    source.mkdir()
    bad_labels = valor_array("CLAP", "segment_pseudo_labels").astype(np.float32)
    bad_labels[3, 4] = 0.5
    make_zip(source / "CLIP.zip", "CLIP", replace={
        ("features", VIDEO_IDS[0]): np.zeros((9, 768), np.float32),      # wrong shape
        ("segment_pseudo_labels", VIDEO_IDS[2]): None})                  # missing id
    make_zip(source / "CLAP.zip", "CLAP", replace={("segment_pseudo_labels", VIDEO_IDS[1]): bad_labels})
    code, out, err = _main(capsys, "--llp_root", str(llp_root), "--from", str(source))
    assert code == 2 and err.startswith("error: 3 problem(s)") and err.count("\n") == 1
    assert f"CLIP/features/{VIDEO_IDS[0]}.npy ((9, 768), expected {CLIP_FEATURE_SHAPE})" in err
    assert f"1 missing: CLIP/segment_pseudo_labels/{VIDEO_IDS[2]}.npy" in err
    assert f"1 not 0/1: CLAP/segment_pseudo_labels/{VIDEO_IDS[1]}.npy (values 0.5)" in err
    assert "CLAP and CLIP not installed" in err
    assert sorted(os.listdir(llp_root)) == ["data"]
    assert "Traceback" not in err and "Traceback" not in out


def test_only_the_set_with_problems_is_refused(llp_root, source, capsys):
    make_zip(source / "CLAP.zip", "CLAP", replace={("features", VIDEO_IDS[1]): np.full(CLAP_FEATURE_SHAPE, np.nan,
                                                                                        np.float32)})
    code, _, err = _main(capsys, "--llp_root", str(llp_root), "--from", str(source))
    assert code == 2 and f"1 not finite: CLAP/features/{VIDEO_IDS[1]}.npy" in err
    assert_installed(llp_root, ["CLIP"])
    assert not (llp_root / "CLAP").exists() and hidden_leftovers(llp_root) == []


def test_extra_files_are_a_note_not_an_error(llp_root, source, capsys):
    make_zip(source / "CLIP.zip", "CLIP", video_ids=VIDEO_IDS + ("ZZZZZZZZZZ9",))
    code, out, err = _main(capsys, "--llp_root", str(llp_root), "--from", str(source), "--sets", "CLIP")
    assert code == 0, err
    assert "CLIP/features: 3 of 3 videos valid" in out and "1 extra file(s)" in out
    assert "note: CLIP/features: 1 file(s) of videos not in the LLP list, ignored: ZZZZZZZZZZ9.npy" in out
    assert not (llp_root / "CLAP").exists()   # --sets CLIP


@pytest.mark.parametrize("prefix", ["CLIP/", "valor_features/CLIP/", "", "./CLIP/"])
def test_an_extra_top_level_folder_is_handled(llp_root, tmp_path, capsys, prefix):
    source = tmp_path / "source"
    source.mkdir()
    make_zip(source / "CLIP.zip", "CLIP", prefix=prefix, extra_members=[("__MACOSX/CLIP/._x.npy", b"junk"),
                                                                         (f"{prefix}README.txt", b"hello")])
    code, _, err = _main(capsys, "--llp_root", str(llp_root), "--from", str(source), "--sets", "CLIP")
    assert code == 0, err
    assert_installed(llp_root, ["CLIP"])


@pytest.mark.parametrize("member", ["../evil.npy", "CLIP/features/../../../evil.npy", "/tmp/evil.npy",
                                    "C:/evil.npy", "..\\evil.npy"])
def test_zip_slip_members_are_refused_before_anything_is_unpacked(llp_root, tmp_path, capsys, member):
    source = tmp_path / "source"
    source.mkdir()
    make_zip(source / "CLIP.zip", "CLIP", extra_members=[(member, b"evil")])
    code, _, err = _main(capsys, "--llp_root", str(llp_root), "--from", str(source), "--sets", "CLIP")
    assert code == 2 and err.count("\n") == 1
    assert "refused" in err and member in err and "nothing unpacked" in err
    assert sorted(os.listdir(llp_root)) == ["data"]
    assert not (tmp_path / "evil.npy").exists() and not (llp_root / "evil.npy").exists()


def test_is_unsafe_member():
    assert not download_valor.is_unsafe_member("CLIP/features/a..b.npy")
    assert not download_valor.is_unsafe_member("valor/CLIP/features/x.npy")
    for name in ("../x", "a/../../x", "/x", "\\x", "C:\\x", "a\\..\\x"):
        assert download_valor.is_unsafe_member(name), name


def test_a_swapped_or_empty_archive_is_refused(llp_root, tmp_path, capsys):
    source = tmp_path / "source"
    source.mkdir()
    make_zip(source / "CLIP.zip", "CLAP")
    code, _, err = _main(capsys, "--llp_root", str(llp_root), "--from", str(source), "--sets", "CLIP")
    assert code == 2 and "holds CLAP/, not CLIP/" in err
    with zipfile.ZipFile(source / "CLIP.zip", "w") as zip_file:
        zip_file.writestr("notes.txt", "nothing here")
    code, _, err = _main(capsys, "--llp_root", str(llp_root), "--from", str(source), "--sets", "CLIP")
    assert code == 2 and "no features/ or segment_pseudo_labels/ folder" in err
    (source / "CLIP.zip").write_bytes(b"not a zip")
    code, _, err = _main(capsys, "--llp_root", str(llp_root), "--from", str(source), "--sets", "CLIP")
    assert code == 2 and "not a readable zip archive" in err and err.count("\n") == 1
    assert sorted(os.listdir(llp_root)) == ["data"]


def test_unpacked_folders_as_source(llp_root, source, tmp_path, capsys):
    unpacked = tmp_path / "unpacked"
    for name in VALOR_SETS:
        with zipfile.ZipFile(source / VALOR_ARCHIVES[name]) as zip_file:
            zip_file.extractall(unpacked)   # as `unzip CLIP.zip` does
    code, _, err = _main(capsys, "--llp_root", str(llp_root), "--from", str(unpacked))
    assert code == 0, err
    assert_installed(llp_root)


def test_a_source_without_a_set_is_an_error(llp_root, source, capsys):
    (source / "CLAP.zip").unlink()
    code, _, err = _main(capsys, "--llp_root", str(llp_root), "--from", str(source))
    assert code == 1 and err.count("\n") == 1
    assert "not found" in err and "CLAP.zip (or an unpacked CLAP/)" in err
    assert sorted(os.listdir(llp_root)) == ["data"]   # reported before anything is unpacked


def test_check_only(llp_root, source, capsys):
    code, _, err = _main(capsys, "--llp_root", str(llp_root), "--check_only")
    assert code == 2 and err == (f"error: 2 problem(s) in the VALOR files under {llp_root}: "
                                 "2 missing folder: CLIP, CLAP\n")
    assert sorted(os.listdir(llp_root)) == ["data"]   # fetches nothing
    assert _main(capsys, "--llp_root", str(llp_root), "--from", str(source))[0] == 0
    code, out, err = _main(capsys, "--llp_root", str(llp_root), "--check_only")
    assert code == 0, err
    assert out.count("of 3 videos valid") == 4
    features = llp_root / "CLAP" / "features"
    np.save(features / f"{VIDEO_IDS[0]}.npy", np.full(CLAP_FEATURE_SHAPE, np.inf, np.float32))
    (features / f"{VIDEO_IDS[1]}.npy").unlink()
    (features / f"{VIDEO_IDS[2]}.npy").write_bytes(b"garbage")
    np.save(llp_root / "CLIP" / "segment_pseudo_labels" / f"{VIDEO_IDS[0]}.npy",
            np.full(PSEUDO_LABEL_SHAPE, 2, np.int64))
    code, _, err = _main(capsys, "--llp_root", str(llp_root), "--check_only")
    assert code == 2 and err.startswith("error: 4 problem(s) in the VALOR files under") and err.count("\n") == 1
    for part in (f"1 not finite: CLAP/features/{VIDEO_IDS[0]}.npy", f"1 missing: CLAP/features/{VIDEO_IDS[1]}.npy",
                 f"1 unreadable: CLAP/features/{VIDEO_IDS[2]}.npy", "1 not 0/1: CLIP/segment_pseudo_labels/"):
        assert part in err
    code, _, err = _main(capsys, "--llp_root", str(llp_root), "--check_only", "--sets", "CLIP")
    assert code == 2 and err.startswith("error: 1 problem(s)")
    (llp_root / "CLIP" / "features").rename(llp_root / "CLIP" / "renamed")
    code, out, err = _main(capsys, "--llp_root", str(llp_root), "--check_only", "--sets", "CLIP")
    assert code == 2 and "1 missing folder: CLIP/features (3 videos expected)" in err
    assert "note: CLIP/features" not in out


def test_an_invalid_set_in_place_is_replaced(llp_root, source, capsys):
    assert _main(capsys, "--llp_root", str(llp_root), "--from", str(source))[0] == 0
    (llp_root / "CLIP" / "features" / f"{VIDEO_IDS[0]}.npy").unlink()
    code, out, err = _main(capsys, "--llp_root", str(llp_root), "--from", str(source))
    assert code == 0, err
    assert "CLIP: present with 1 problem(s); fetching it again" in out and "CLAP: present and valid" in out
    assert_installed(llp_root)
    assert hidden_leftovers(llp_root) == []


def test_an_interrupted_unpack_leaves_no_layout(llp_root, source, monkeypatch, capsys):
    copied = []

    def interrupted_copy(source_file, destination_file):
        if copied:
            raise KeyboardInterrupt
        copied.append(destination_file.write(source_file.read()))
    monkeypatch.setattr(download_valor.shutil, "copyfileobj", interrupted_copy)
    with pytest.raises(KeyboardInterrupt):
        _main(capsys, "--llp_root", str(llp_root), "--from", str(source))
    assert sorted(os.listdir(llp_root)) == ["data"]


def test_video_list_from_the_split_files_or_an_error(tmp_path, source, capsys):
    root = tmp_path / "llp"
    for name, ids in ((LABEL_TRAIN_CSV, VIDEO_IDS[:1]), (LABEL_VAL_CSV, VIDEO_IDS[1:2]),
                      (LABEL_TEST_CSV, VIDEO_IDS[2:])):
        write_label_csv(root / "data" / name, ids)
    assert download_valor.read_video_ids(str(root)) == sorted(f"{i}.npy" for i in VIDEO_IDS)
    (root / "data" / LABEL_VAL_CSV).unlink()
    code, _, err = _main(capsys, "--llp_root", str(root), "--from", str(source))
    assert code == 2 and err.count("\n") == 1
    assert LABEL_FULL_CSV in err and "scripts/download_llp.py" in err


# --- the download path, with huggingface_hub missing or stood in for -----------------------------

def test_missing_huggingface_hub_names_the_install_command(llp_root, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)   # `import huggingface_hub` fails
    code, _, err = _main(capsys, "--llp_root", str(llp_root))
    assert code == 1 and err.count("\n") == 1
    assert 'needs huggingface_hub: pip install -e ".[hf]"' in err
    assert sorted(os.listdir(llp_root)) == ["data"]


def fake_hub(monkeypatch, download):
    module = types.ModuleType("huggingface_hub")
    module.hf_hub_download = download
    monkeypatch.setitem(sys.modules, "huggingface_hub", module)


def test_download_takes_the_zips_from_the_dataset_repository(llp_root, source, monkeypatch, capsys):
    calls = []

    def hf_hub_download(**kwargs):
        calls.append(kwargs)
        return str(source / kwargs["filename"])
    fake_hub(monkeypatch, hf_hub_download)
    code, _, err = _main(capsys, "--llp_root", str(llp_root), "--revision", "v1")
    assert code == 0, err
    assert calls == [dict(repo_id=VALOR_HF_REPO, filename=VALOR_ARCHIVES[name], repo_type="dataset", revision="v1")
                     for name in VALOR_SETS]
    assert VALOR_HF_REPO == "NTUBarista/valor_features" and VALOR_ARCHIVES == {"CLIP": "CLIP.zip", "CLAP": "CLAP.zip"}
    assert_installed(llp_root)


def test_a_failed_download_is_one_line(llp_root, monkeypatch, capsys):
    def hf_hub_download(**kwargs):
        raise RuntimeError("404 Client Error: Not Found\nRepository Not Found for url: ...")
    fake_hub(monkeypatch, hf_hub_download)
    code, _, err = _main(capsys, "--llp_root", str(llp_root), "--sets", "CLAP")
    assert code == 1 and err.count("\n") == 1
    assert err == (f"error: CLAP.zip: cannot download from the Hugging Face dataset {VALOR_HF_REPO}: "
                   "404 Client Error: Not Found\n")
