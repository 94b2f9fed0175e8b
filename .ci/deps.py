"""The dependencies pyproject.toml declares, in the forms .ci/run needs, so that CI installs and
prints what the project declares and no list of its own can drift from it.

    python .ci/deps.py upgrade    every declared requirement but torch, with its bounds
    python .ci/deps.py lowest     every declared requirement but torch at its lower bound (NAME==X.Y.*)
    python .ci/deps.py versions   python and the installed version of every declared distribution

torch is left out of `upgrade` and `lowest`: CI installs it once, as the CPU build on this disk,
and pip must never replace it (any other torch is a multi-GB CUDA download).
"""
import importlib.metadata
import os
import re
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEPT_BY_CI = "torch"
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*$")


def declared():
    """(name, specifier) of every requirement of the project and its extras, in declared order,
    without the extras that only name other extras (`all`)."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        project = tomllib.load(handle)["project"]
    found = {}
    groups = [project["dependencies"], *project.get("optional-dependencies", {}).values()]
    for requirement in (entry for group in groups for entry in group):
        name, _, specifier = REQUIREMENT.match(requirement).groups()
        if name != project["name"]:
            found.setdefault(name.lower(), specifier.replace(" ", ""))
    return list(found.items())


def lower_bound(name, specifier):
    bounds = [part[2:] for part in specifier.split(",") if part.startswith(">=")]
    if len(bounds) != 1:
        sys.exit(f"{name}{specifier}: CI tests the lower bound of every dependency, so each needs one '>='")
    return bounds[0]


def main(command):
    requirements = [(name, specifier) for name, specifier in declared() if name != KEPT_BY_CI]
    if command == "upgrade":
        print("\n".join(name + specifier for name, specifier in requirements))
    elif command == "lowest":
        print("\n".join(f"{name}=={lower_bound(name, specifier)}.*" for name, specifier in requirements))
    elif command == "versions":
        print(f"python {sys.version.split()[0]}")
        for name, _ in declared():
            try:
                print(f"{name} {importlib.metadata.version(name)}")
            except importlib.metadata.PackageNotFoundError:
                print(f"{name} (not installed)")
    else:
        sys.exit(f"unknown command {command!r}: upgrade, lowest or versions")


if __name__ == "__main__":
    main(*sys.argv[1:] or ["versions"])
