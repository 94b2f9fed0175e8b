"""scripts/download_llp.py, offline: --from a local copy of the annotation files and of the two DHHN
release files, a file:// stand-in for the download URLs, and --check."""
import os
import shutil
import subprocess
import sys

import pytest

from avvp_data.llp import (
    ANNOTATION_FILES,
    EVAL_AUDIO_2020_CSV,
    EVAL_AUDIO_2020_SHA256,
    EVAL_AUDIO_2020_URL,
    EVAL_AUDIO_CSV,
    LABEL_TRAIN_CSV,
    PUBLISHED_FLAGS_FILE,
    PUBLISHED_FLAGS_SHA256,
    PUBLISHED_FLAGS_URL,
    REPRODUCTION_FILES,
    REPRODUCTION_RELEASE_PATHS,
    REPRODUCTION_SOURCE_NAMES,
)
from conftest import SHARED_LLP, script_path
from scripts import download_llp
from utils.io import file_sha256

SCRIPT = script_path("download_llp")
OLDER_AUDIO_COPY = "AVVP_eval_audio_2020_with_defects.csv"
# the names the two release files have in the shared folder
SHARED_RELEASE_NAMES = {PUBLISHED_FLAGS_FILE: PUBLISHED_FLAGS_FILE, EVAL_AUDIO_2020_CSV: OLDER_AUDIO_COPY}

needs_real_annotations = pytest.mark.skipif(
    not all(os.path.isfile(os.path.join(SHARED_LLP, name)) for name in ANNOTATION_FILES),
    reason=f"the real annotation files are not in {SHARED_LLP}")

needs_shared_llp = pytest.mark.skipif(
    not all(os.path.isfile(os.path.join(SHARED_LLP, name))
            for name in ANNOTATION_FILES + tuple(SHARED_RELEASE_NAMES.values())),
    reason=f"the real annotation and release files are not in {SHARED_LLP}")




def _main(capsys, *args):
    """(exit code, stdout, stderr) of the script's main() run in-process."""
    code = download_llp.main(download_llp.get_args_parser().parse_args(list(args)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def source(tmp_path):
    """A private copy of the six real annotation files (the shared folder stays read-only)."""
    folder = tmp_path / "source"
    folder.mkdir()
    for name in ANNOTATION_FILES:
        shutil.copyfile(os.path.join(SHARED_LLP, name), folder / name)
    return folder


@pytest.fixture
def release_source(source):
    """`source` plus the two real release files, under the names the shared folder gives them."""
    for shared_name in SHARED_RELEASE_NAMES.values():
        shutil.copyfile(os.path.join(SHARED_LLP, shared_name), source / shared_name)
    return source


def test_digest_table_covers_the_annotation_files():
    assert set(download_llp.ANNOTATION_SHA256) == set(ANNOTATION_FILES)
    assert all(len(digest) == 64 for digest in download_llp.ANNOTATION_SHA256.values())


@needs_real_annotations
def test_digests_match_shared_sha256sums():
    with open(os.path.join(SHARED_LLP, "SHA256SUMS")) as handle:
        listed = {name: digest for digest, name in (line.split() for line in handle if line.strip())}
    for name, digest in download_llp.ANNOTATION_SHA256.items():
        assert listed[name] == digest
    assert listed[OLDER_AUDIO_COPY] == download_llp.OLDER_ANNOTATION_SHA256[EVAL_AUDIO_CSV]
    assert listed[PUBLISHED_FLAGS_FILE] == PUBLISHED_FLAGS_SHA256
    assert listed[OLDER_AUDIO_COPY] == EVAL_AUDIO_2020_SHA256


@needs_shared_llp
def test_copy_from_local_folder_then_check_then_skip(release_source, tmp_path):
    """The command line end to end (one subprocess): the six annotation files and the two release
    files, the latter under their kept names."""
    out = tmp_path / "data"
    result = subprocess.run([sys.executable, SCRIPT, "--from", str(release_source), "--out", str(out)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == sorted(download_llp.ALL_FILES)  # no temp files left behind
    assert "Google Drive" in result.stdout and "feats/res152" in result.stdout
    for name in ANNOTATION_FILES:
        assert (out / name).read_bytes() == (release_source / name).read_bytes()
    for name, shared_name in SHARED_RELEASE_NAMES.items():
        assert (out / name).read_bytes() == (release_source / shared_name).read_bytes()


@needs_real_annotations
def test_check_and_skip_verified_files(source, tmp_path, capsys):
    code, out, _ = _main(capsys, "--check", "--annotations_only", "--out", str(source))
    assert code == 0 and out.count(": ok") == len(ANNOTATION_FILES)
    done = download_llp.fetch_annotations(str(source), source_dir=str(tmp_path / "nowhere"),
                                          log=lambda _: None)
    assert set(done.values()) == {"present"}  # verified files are not fetched again


@needs_shared_llp
def test_corrupted_source_is_a_clear_error(release_source, tmp_path, capsys):
    source = release_source
    with open(source / LABEL_TRAIN_CSV, "a") as handle:
        handle.write("extra_video_0_10\tSpeech\n")
    out = tmp_path / "data"
    code, _, err = _main(capsys, "--from", str(source), "--out", str(out))
    assert code == 2 and err.count("\n") == 1
    assert LABEL_TRAIN_CSV in err
    assert download_llp.ANNOTATION_SHA256[LABEL_TRAIN_CSV] in err
    assert file_sha256(source / LABEL_TRAIN_CSV) in err
    assert not (out / LABEL_TRAIN_CSV).exists()

    with pytest.raises(download_llp.ChecksumError, match=LABEL_TRAIN_CSV):
        download_llp.fetch_annotations(str(out), source_dir=str(source), log=lambda _: None)


@needs_real_annotations
def test_check_reports_missing_and_corrupted_files(source, capsys):
    (source / ANNOTATION_FILES[0]).unlink()
    with open(source / ANNOTATION_FILES[1], "ab") as handle:
        handle.write(b"x")
    code, out, err = _main(capsys, "--check", "--out", str(source))
    assert code == 1 and ANNOTATION_FILES[0] in err
    assert f"{ANNOTATION_FILES[0]}: missing" in out
    assert f"{ANNOTATION_FILES[1]}: wrong digest" in out


@needs_real_annotations
def test_older_audio_copy_is_accepted_with_a_warning(source, tmp_path, capsys):
    shutil.copyfile(os.path.join(SHARED_LLP, OLDER_AUDIO_COPY), source / EVAL_AUDIO_CSV)
    out = tmp_path / "data"
    with pytest.warns(UserWarning, match="older"):
        done = download_llp.fetch_annotations(str(out), source_dir=str(source), log=lambda _: None)
    assert done[EVAL_AUDIO_CSV] == "copied"
    assert download_llp.check_annotations(str(out))[EVAL_AUDIO_CSV] == download_llp.OLDER
    with pytest.warns(UserWarning, match="older"):
        code, out_text, _ = _main(capsys, "--check", "--annotations_only", "--out", str(out))
    assert code == 0 and f"{EVAL_AUDIO_CSV}: older copy" in out_text


def test_missing_source_file_is_an_error(tmp_path, capsys):
    code, _, err = _main(capsys, "--from", str(tmp_path / "empty"), "--out", str(tmp_path / "data"))
    assert code == 1 and "not found" in err


def test_unreachable_url_is_an_error_not_a_traceback(tmp_path, capsys):
    # a file:// URL to a missing folder stands in for a network failure (no network in tests)
    code, _, err = _main(capsys, "--out", str(tmp_path / "data"),
                         "--base_url", (tmp_path / "no_mirror").as_uri() + "/")
    assert code == 1 and "error:" in err and ANNOTATION_FILES[0] in err


# --- the two DHHN release files: need_to_change_MA.pkl and AVVP_eval_audio_2020.csv ---------------

@pytest.fixture
def stand_in_source(tmp_path, monkeypatch):
    """A --from folder of small stand-ins for all eight files, the two release files under their
    published names, with the stand-ins' digests patched in: runs without the shared folder."""
    folder = tmp_path / "stand_in_source"
    folder.mkdir()
    for name in download_llp.ALL_FILES:
        data = f"stand-in for {name}\n".encode()
        monkeypatch.setitem(download_llp.EXPECTED_SHA256, name, download_llp.sha256_of_bytes(data))
        (folder / download_llp.source_names(name)[-1]).write_bytes(data)
    return folder


def test_release_file_constants():
    assert issubclass(download_llp.ChecksumError, download_llp.UserError)   # exit code 2
    assert REPRODUCTION_FILES == (PUBLISHED_FLAGS_FILE, EVAL_AUDIO_2020_CSV) == ("need_to_change_MA.pkl",
                                                                                 "AVVP_eval_audio_2020.csv")
    assert EVAL_AUDIO_2020_SHA256 == download_llp.OLDER_ANNOTATION_SHA256[EVAL_AUDIO_CSV]
    assert PUBLISHED_FLAGS_SHA256 == "e646301861e8d29422e28cb76db5e9ae18176762786e11eacb0da651b4614d76"
    release = "https://raw.githubusercontent.com/anonyUsr22/DHHN/"
    for name, url in ((PUBLISHED_FLAGS_FILE, PUBLISHED_FLAGS_URL), (EVAL_AUDIO_2020_CSV, EVAL_AUDIO_2020_URL)):
        assert download_llp.url_of(name) == url
        commit, path = url.removeprefix(release).split("/", 1)
        assert len(commit) == 40 and path == REPRODUCTION_RELEASE_PATHS[name]   # pinned to a commit
        assert REPRODUCTION_SOURCE_NAMES[name][0] == name   # the kept name is tried first
    assert REPRODUCTION_RELEASE_PATHS == {PUBLISHED_FLAGS_FILE: "need_to_change.pkl",
                                          EVAL_AUDIO_2020_CSV: "data/AVVP_eval_audio.csv"}
    assert download_llp.url_of(LABEL_TRAIN_CSV) == download_llp.BASE_URL + LABEL_TRAIN_CSV


@pytest.mark.parametrize("naming", ["published", "kept"])
def test_release_files_are_copied_under_their_kept_names(stand_in_source, tmp_path, capsys, naming):
    if naming == "kept":
        for name, names in REPRODUCTION_SOURCE_NAMES.items():
            (stand_in_source / names[-1]).rename(stand_in_source / name)
    out = tmp_path / "data"
    code, text, err = _main(capsys, "--from", str(stand_in_source), "--out", str(out))
    assert code == 0, err
    assert sorted(os.listdir(out)) == sorted(download_llp.ALL_FILES)
    for name in REPRODUCTION_FILES:
        assert f"{name}: copied from" in text
        assert (out / name).read_bytes() == f"stand-in for {name}\n".encode()
    assert "--refined_labels" in text and "--eval_audio_csv" in text
    code, text, _ = _main(capsys, "--check", "--out", str(out))
    assert code == 0 and text.count(": ok") == len(download_llp.ALL_FILES)
    done = download_llp.fetch_all(str(out), source_dir=str(tmp_path / "nowhere"), log=lambda _: None)
    assert set(done.values()) == {"present"}   # verified files are not fetched again


@pytest.mark.parametrize("name", REPRODUCTION_FILES)
def test_release_file_with_a_wrong_digest_is_refused(stand_in_source, tmp_path, capsys, name):
    published = stand_in_source / REPRODUCTION_SOURCE_NAMES[name][-1]
    with open(published, "ab") as handle:
        handle.write(b"x")
    out = tmp_path / "data"
    code, _, err = _main(capsys, "--from", str(stand_in_source), "--out", str(out))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert name in err and str(published) in err
    assert download_llp.EXPECTED_SHA256[name] in err and file_sha256(published) in err
    assert name not in os.listdir(out) and not [f for f in os.listdir(out) if f.endswith(".tmp")]
    with pytest.raises(download_llp.ChecksumError, match=name):
        download_llp.fetch_all(str(out), source_dir=str(stand_in_source), log=lambda _: None)
    assert name not in os.listdir(out)


@pytest.mark.parametrize("name", REPRODUCTION_FILES)
def test_a_source_without_a_release_file_is_an_error_unless_annotations_only(stand_in_source, tmp_path,
                                                                              capsys, name):
    (stand_in_source / REPRODUCTION_SOURCE_NAMES[name][-1]).unlink()
    out = tmp_path / "data"
    code, _, err = _main(capsys, "--from", str(stand_in_source), "--out", str(out))
    assert code == 1 and err.count("\n") == 1
    assert "not found" in err and name in err and "--annotations_only" in err
    for other in REPRODUCTION_SOURCE_NAMES[name][1:]:
        assert other in err   # the published name it was looked for under too
    assert os.listdir(out) == []   # reported before anything is written
    code, text, err = _main(capsys, "--from", str(stand_in_source), "--out", str(out), "--annotations_only")
    assert code == 0, err
    assert sorted(os.listdir(out)) == sorted(ANNOTATION_FILES)
    assert "--refined_labels" not in text


def test_check_reports_missing_and_wrong_release_files(stand_in_source, tmp_path, capsys):
    out = tmp_path / "data"
    download_llp.fetch_all(str(out), source_dir=str(stand_in_source), log=lambda _: None)
    (out / PUBLISHED_FLAGS_FILE).unlink()
    with open(out / EVAL_AUDIO_2020_CSV, "ab") as handle:
        handle.write(b"x")
    code, text, err = _main(capsys, "--check", "--out", str(out))
    assert code == 1 and PUBLISHED_FLAGS_FILE in err and EVAL_AUDIO_2020_CSV in err
    assert f"{PUBLISHED_FLAGS_FILE}: missing" in text
    assert f"{EVAL_AUDIO_2020_CSV}: wrong digest" in text
    code, text, _ = _main(capsys, "--check", "--annotations_only", "--out", str(out))
    assert code == 0 and PUBLISHED_FLAGS_FILE not in text and EVAL_AUDIO_2020_CSV not in text
    # a default run repairs them from the source, leaving the verified annotation files alone
    done = download_llp.fetch_all(str(out), source_dir=str(stand_in_source), log=lambda _: None)
    assert {name for name, what in done.items() if what == "copied"} == set(REPRODUCTION_FILES)


def _mirrors(stand_in_source, tmp_path):
    """file:// stand-ins for AVVP-ECCV20/data/ and for the DHHN release (its own layout)."""
    annotations, release = tmp_path / "avvp_mirror", tmp_path / "dhhn_mirror"
    annotations.mkdir()
    for name in ANNOTATION_FILES:
        shutil.copyfile(stand_in_source / name, annotations / name)
    for name, path in REPRODUCTION_RELEASE_PATHS.items():
        (release / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stand_in_source / REPRODUCTION_SOURCE_NAMES[name][-1], release / path)
    return annotations.as_uri() + "/", release.as_uri() + "/"


def test_download_takes_the_release_files_from_their_release_paths(stand_in_source, tmp_path, capsys):
    base_url, release_url = _mirrors(stand_in_source, tmp_path)
    out = tmp_path / "data"
    code, text, err = _main(capsys, "--out", str(out), "--base_url", base_url, "--release_base_url", release_url)
    assert code == 0, err
    assert sorted(os.listdir(out)) == sorted(download_llp.ALL_FILES)
    assert f"{EVAL_AUDIO_2020_CSV}: downloaded from {release_url}data/AVVP_eval_audio.csv" in text
    assert (out / PUBLISHED_FLAGS_FILE).read_bytes() == (stand_in_source / "need_to_change.pkl").read_bytes()


def test_unreachable_release_is_an_error_naming_the_file(stand_in_source, tmp_path, capsys):
    base_url, _ = _mirrors(stand_in_source, tmp_path)
    out = tmp_path / "data"
    code, _, err = _main(capsys, "--out", str(out), "--base_url", base_url,
                         "--release_base_url", (tmp_path / "no_mirror").as_uri() + "/")
    assert code == 1 and err.startswith(f"error: {PUBLISHED_FLAGS_FILE}: cannot download")
    assert PUBLISHED_FLAGS_FILE not in os.listdir(out)


@needs_shared_llp
def test_from_the_shared_folder(tmp_path, capsys):
    """--from the shared LLP folder (read only): the published flags come out byte-identical."""
    out = tmp_path / "data"
    code, _, err = _main(capsys, "--from", str(SHARED_LLP), "--out", str(out))
    assert code == 0, err
    assert sorted(os.listdir(out)) == sorted(download_llp.ALL_FILES)
    assert (out / PUBLISHED_FLAGS_FILE).read_bytes() == (SHARED_LLP / PUBLISHED_FLAGS_FILE).read_bytes()
    assert (out / EVAL_AUDIO_2020_CSV).read_bytes() == (SHARED_LLP / OLDER_AUDIO_COPY).read_bytes()
    assert file_sha256(out / PUBLISHED_FLAGS_FILE) == PUBLISHED_FLAGS_SHA256
    assert file_sha256(out / EVAL_AUDIO_2020_CSV) == EVAL_AUDIO_2020_SHA256
    assert (out / EVAL_AUDIO_CSV).read_bytes() == (SHARED_LLP / EVAL_AUDIO_CSV).read_bytes()   # still the default
