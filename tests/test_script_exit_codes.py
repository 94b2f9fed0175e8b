"""Every script of scripts/ ends a usage error the way main_DHHN.py does: one `error: ...` line on
stderr, no traceback, exit status 2 (1 is left for runs that fail), and nothing written."""
import os
import subprocess
import sys

import pytest

from conftest import script_path


def foreign_folder(tmp_path):
    """A folder holding an annotation file the synthetic generator did not write."""
    (tmp_path / "foreign" / "data").mkdir(parents=True)
    (tmp_path / "foreign" / "data" / "AVVP_train.csv").write_text("someone else's file\n")
    return str(tmp_path / "foreign")


# (script, its arguments in a temporary folder, how stderr starts; {tmp}: that folder)
CASES = [
    ("sweep", lambda tmp: ["--seeds", "1", "--out_dir", f"{tmp}/made"],
     "error: give --preset or at least one --config"),
    ("sweep", lambda tmp: ["--config", "A=--model han --epochs 0", "--seeds", "1", "--llp_root", str(tmp),
                           "--out_dir", f"{tmp}/made"],
     "error: 1 of 1 configuration(s) cannot run; nothing was started:\n"
     "  A: --mode train: --epochs 0: must be at least 1"),
    ("visualize_parsing", lambda tmp: ["--predictions", f"{tmp}/absent.npz", "--rank_by", "gain", "--best", "3",
                                       "--out_dir", f"{tmp}/made"],
     "error: --rank_by gain needs --compare"),
    ("benchmark", lambda tmp: ["--n_test", "0", "--root", f"{tmp}/made"],
     "error: --n_test 0: must be at least 1 (loading val reads the test label file too)"),
    ("bench_eval", lambda tmp: ["--videos", "0"], "error: --videos 0: must be at least 1"),
    ("make_synthetic_llp", lambda tmp: ["--out", f"{tmp}/made", "--n_train", "-3", "--no_progress"],
     "error: --n_train -3: must be 0 or more"),
    ("make_synthetic_llp", lambda tmp: ["--out", foreign_folder(tmp), "--size", "tiny", "--no_progress"],
     "error: {tmp}/foreign already holds annotation, feature or pseudo-label files that the synthetic "
     "generator did not write"),
    ("extract_features", lambda tmp: [f"{tmp}/absent.mp4", "--out_dir", f"{tmp}/made"],
     "error: {tmp}/absent.mp4: no such file or folder"),
]


@pytest.mark.parametrize("script, argv, message", CASES, ids=[f"{case[0]}-{i}" for i, case in enumerate(CASES)])
def test_a_usage_error_is_one_line_and_exit_status_2(tmp_path, script, argv, message):
    result = subprocess.run([sys.executable, script_path(script), *argv(tmp_path)], cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(message.replace("{tmp}", str(tmp_path))), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "made").exists()
