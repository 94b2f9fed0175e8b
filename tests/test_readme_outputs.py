"""scripts/readme_outputs.py finds the printed tables among the test step's other lines."""
import importlib.util
import os

import numpy as np
import pytest

from conftest import REPO_ROOT
from reporting.tables import format_confusion, format_table
from utils.eval_metrics import METRIC_KEYS


def load_readme_outputs():
    spec = importlib.util.spec_from_file_location(
        "readme_outputs", os.path.join(REPO_ROOT, "scripts", "readme_outputs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_phase_and_provenance_lines_under_the_split_prefix_are_not_tables():
    readme_outputs = load_readme_outputs()
    headline = format_table({key: 0.5 for key in METRIC_KEYS}, title="test: DHHN dual")
    confusion = format_confusion(np.arange(16).reshape(4, 4), title="test: modality confusion of DHHN dual")
    log = "\n".join([
        "test: loading labels, truth and features",
        "test: 16 videos loaded and checked in 0.0 s",
        "DHHN test | commit unknown | device cpu",
        "annotations: --eval_audio_csv x.csv: unrecognised",
        headline,
        "test: writing results",
        confusion,
    ])
    tables = readme_outputs.printed_test_tables(log)
    assert list(tables) == ["test: DHHN dual", "test: modality confusion of DHHN dual"]
    assert tables["test: DHHN dual"] == headline.splitlines()
    assert tables["test: modality confusion of DHHN dual"] == confusion.splitlines()


def test_a_log_without_tables_is_refused():
    readme_outputs = load_readme_outputs()
    with pytest.raises(readme_outputs.OutputError, match="no test table"):
        readme_outputs.printed_test_tables("test: loading labels, truth and features\ntest: done\n")
