"""The structure rules: imports point one way, every user error derives from UserError, the code
cites PROTOCOL.md (which has every cited section) and never the specification it was written from."""
import ast
import importlib
import inspect
import os
import re

import pytest

from conftest import REPO_ROOT
from utils.errors import UserError

# rank of each top-level part of the project: a module may import its own part and parts of a
# lower rank, nothing else (README, "Project layout")
LAYER_RANKS = {"utils": 0, "avvp_data": 1, "nets": 2, "extraction": 2, "dataloader": 2,
               "reporting": 3, "recipes": 3, "engine": 3, "config": 4, "modes": 5, "main_DHHN": 6,
               "scripts": 7, "parse_video": 7}
PROJECT_PARTS = set(LAYER_RANKS) - {"scripts", "parse_video"}


def project_files():
    """Repository-relative paths of every project .py file outside tests/."""
    found = []
    for folder, subfolders, files in os.walk(REPO_ROOT):
        subfolders[:] = [name for name in subfolders
                         if not name.startswith(".") and name not in ("tests", "data", "feats", "models")]
        found += [os.path.relpath(os.path.join(folder, name), REPO_ROOT) for name in files if name.endswith(".py")]
    return sorted(found)


def part_of(relative_path):
    return relative_path.split(os.sep)[0].removesuffix(".py")


def imported_parts(source):
    """Top-level project parts imported anywhere in `source` (function-level imports included)."""
    parts = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        parts.update(name.split(".")[0] for name in names if name.split(".")[0] in PROJECT_PARTS)
    return parts


def upward_imports(part, source):
    return sorted(other for other in imported_parts(source)
                  if other != part and LAYER_RANKS[other] >= LAYER_RANKS[part])


def test_the_layer_check_catches_an_upward_import():
    assert upward_imports("utils", "import numpy\nfrom utils.io import atomic_write\n") == []
    assert upward_imports("utils", "def f():\n    import engine\n") == ["engine"]
    assert upward_imports("nets", "from dataloader import LLPSplit\n") == ["dataloader"]   # same rank, other part
    assert upward_imports("utils", "from avvp_data.llp import CLASSES\n") == ["avvp_data"]
    assert upward_imports("modes", "from recipes import RECIPES\nimport engine\n") == []


@pytest.mark.parametrize("relative_path", project_files())
def test_imports_point_one_way(relative_path):
    with open(os.path.join(REPO_ROOT, relative_path)) as handle:
        source = handle.read()
    assert upward_imports(part_of(relative_path), source) == []


def _modules_defining_errors():
    for relative_path in project_files():
        with open(os.path.join(REPO_ROOT, relative_path)) as handle:
            tree = ast.parse(handle.read())
        if any(isinstance(node, ast.ClassDef) and node.name.endswith("Error") for node in ast.walk(tree)):
            yield relative_path


@pytest.mark.parametrize("relative_path", sorted(_modules_defining_errors()))
def test_every_error_class_is_a_user_error(relative_path):
    module = importlib.import_module(relative_path.removesuffix(".py").replace(os.sep, "."))
    errors = [cls for _, cls in inspect.getmembers(module, inspect.isclass)
              if issubclass(cls, Exception) and not issubclass(cls, Warning) and cls.__module__ == module.__name__]
    assert errors, relative_path
    assert [cls.__name__ for cls in errors if not issubclass(cls, UserError)] == []


def test_main_prints_a_user_error_in_one_line_and_lets_bugs_through(monkeypatch, capsys, tmp_path):
    import main_DHHN
    argv = ["--mode", "test", "--model_save_dir", str(tmp_path)]

    class FreshError(UserError):
        pass

    def raises(error):
        def mode(args):
            raise error
        return mode
    monkeypatch.setitem(main_DHHN.MODES, "test", raises(FreshError("--flag x: what is wrong")))
    with pytest.raises(SystemExit) as exit_info:
        main_DHHN.main(main_DHHN.get_args_parser().parse_args(argv))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: --flag x: what is wrong\n"
    monkeypatch.setitem(main_DHHN.MODES, "test", raises(KeyError("a bug")))
    with pytest.raises(KeyError):
        main_DHHN.main(main_DHHN.get_args_parser().parse_args(argv))


CITATION = re.compile(r"PROTOCOL\.md (§\d+)")


def test_code_cites_protocol_sections_that_exist_and_never_the_spec():
    with open(os.path.join(REPO_ROOT, "docs", "PROTOCOL.md")) as handle:
        sections = set(re.findall(r"^## (§\d+) ", handle.read(), flags=re.MULTILINE))
    assert sections == {f"§{number}" for number in range(1, 17)}
    cited = set()
    for relative_path in project_files() + ["DHHN_origin.sh", "DHHN_refinement.sh"]:
        with open(os.path.join(REPO_ROOT, relative_path)) as handle:
            text = handle.read()
        assert "SPEC" not in text, relative_path
        cited.update(CITATION.findall(text))
    assert cited and cited <= sections
