"""scripts/download_llp.py, offline: --from a local copy of the annotation files, and --check."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import SHARED_LLP, load_script, script_path
from utils.constants import ANNOTATION_FILES, EVAL_AUDIO_CSV, LABEL_TRAIN_CSV

SCRIPT = script_path("download_llp")
OLDER_AUDIO_COPY = "AVVP_eval_audio_2020_with_defects.csv"

needs_real_annotations = pytest.mark.skipif(
    not all(os.path.isfile(os.path.join(SHARED_LLP, name)) for name in ANNOTATION_FILES),
    reason=f"the real annotation files are not in {SHARED_LLP}")


download_llp = load_script("download_llp")


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


@needs_real_annotations
def test_copy_from_local_folder_then_check_then_skip(source, tmp_path):
    """The command line end to end (one subprocess), then --check and the skip in-process."""
    out = tmp_path / "data"
    result = subprocess.run([sys.executable, SCRIPT, "--from", str(source), "--out", str(out)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == sorted(ANNOTATION_FILES)  # no temp files left behind
    assert "Google Drive" in result.stdout and "feats/res152" in result.stdout
    for name in ANNOTATION_FILES:
        assert (out / name).read_bytes() == (source / name).read_bytes()


@needs_real_annotations
def test_check_and_skip_verified_files(source, tmp_path, capsys):
    code, out, _ = _main(capsys, "--check", "--out", str(source))
    assert code == 0 and out.count(": ok") == len(ANNOTATION_FILES)
    done = download_llp.fetch_annotations(str(source), source_dir=str(tmp_path / "nowhere"),
                                          log=lambda _: None)
    assert set(done.values()) == {"present"}  # verified files are not fetched again


@needs_real_annotations
def test_corrupted_source_is_a_clear_error(source, tmp_path, capsys):
    with open(source / LABEL_TRAIN_CSV, "a") as handle:
        handle.write("extra_video_0_10\tSpeech\n")
    out = tmp_path / "data"
    code, _, err = _main(capsys, "--from", str(source), "--out", str(out))
    assert code == 1
    assert LABEL_TRAIN_CSV in err
    assert download_llp.ANNOTATION_SHA256[LABEL_TRAIN_CSV] in err
    assert download_llp.sha256_of_file(source / LABEL_TRAIN_CSV) in err
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
        code, out_text, _ = _main(capsys, "--check", "--out", str(out))
    assert code == 0 and f"{EVAL_AUDIO_CSV}: older copy" in out_text


def test_missing_source_file_is_an_error(tmp_path, capsys):
    code, _, err = _main(capsys, "--from", str(tmp_path / "empty"), "--out", str(tmp_path / "data"))
    assert code == 1 and "not found" in err


def test_unreachable_url_is_an_error_not_a_traceback(tmp_path, capsys):
    # a file:// URL to a missing folder stands in for a network failure (no network in tests)
    code, _, err = _main(capsys, "--out", str(tmp_path / "data"),
                         "--base_url", (tmp_path / "no_mirror").as_uri() + "/")
    assert code == 1 and "error:" in err and ANNOTATION_FILES[0] in err
