"""pyproject.toml is the one list of dependencies and modules: requirements*.txt repeat its groups
exactly, `all` takes every extra, and every top-level package and module of the checkout is
declared, so that `pip install -e .` makes all of them importable."""
import os
import re
import tomllib

import pytest

from conftest import REPO_ROOT

# requirements file -> the group of pyproject.toml it repeats (None: the core dependencies)
REQUIREMENT_FILES = {"requirements.txt": None, "requirements-video.txt": "video", "requirements-hf.txt": "hf",
                     "requirements-sweep.txt": "sweep", "requirements-test.txt": "test"}
NOT_INSTALLED = ("tests",)   # top-level folders with Python files that are not part of the package


def pyproject():
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)


def normalized(requirement):
    """'NumPy >= 1.24' -> 'numpy>=1.24': names compare case-insensitively, spaces do not count."""
    name, specifier = re.match(r"\s*([A-Za-z0-9._-]+)(.*)", requirement).groups()
    return name.lower() + specifier.replace(" ", "")


def file_requirements(name):
    with open(os.path.join(REPO_ROOT, name)) as handle:
        lines = (line.split("#", 1)[0].strip() for line in handle)
        return [normalized(line) for line in lines if line]


@pytest.mark.parametrize("file_name, group", REQUIREMENT_FILES.items())
def test_requirement_files_repeat_the_pyproject_groups(file_name, group):
    project = pyproject()["project"]
    declared = project["dependencies"] if group is None else project["optional-dependencies"][group]
    assert file_requirements(file_name) == [normalized(requirement) for requirement in declared]


def test_every_requirement_file_has_a_group_and_all_takes_every_extra():
    found = sorted(name for name in os.listdir(REPO_ROOT) if re.fullmatch(r"requirements.*\.txt", name))
    assert found == sorted(REQUIREMENT_FILES)
    project = pyproject()["project"]
    extras = {name for name in project["optional-dependencies"] if name != "all"}
    assert extras == {group for group in REQUIREMENT_FILES.values() if group}
    (everything,) = project["optional-dependencies"]["all"]
    name, taken = re.fullmatch(r"([A-Za-z0-9._-]+)\[(.*)\]", everything).groups()
    assert name == project["name"] and set(taken.split(",")) == extras


def test_every_top_level_package_and_module_is_declared():
    entries = [name for name in os.listdir(REPO_ROOT) if not name.startswith(".")]
    folders = [name for name in entries if os.path.isdir(os.path.join(REPO_ROOT, name))]
    packages = sorted(name for name in folders if os.path.isfile(os.path.join(REPO_ROOT, name, "__init__.py")))
    modules = sorted(name.removesuffix(".py") for name in entries if name.endswith(".py"))
    setuptools = pyproject()["tool"]["setuptools"]
    assert sorted(setuptools["packages"]) == packages
    assert sorted(setuptools["py-modules"]) == modules
    # a folder of Python files without __init__.py would be left out of the install unnoticed
    loose = [name for name in folders if name not in packages and name not in NOT_INSTALLED
             and any(file.endswith(".py") for file in os.listdir(os.path.join(REPO_ROOT, name)))]
    assert loose == []
