"""Every command that README.md and docs/*.md show runs as written.

Commands live in fenced ```sh blocks (no other shell fence is allowed, so none escapes). Each is
checked: `python X.py ...` names a file whose argparse parser accepts every flag and value it
passes (flags a script hands on to main_DHHN.py, as the pipeline scripts do with "$@" and
sweep.py with what follows `--`, are checked against main_DHHN.py's parser), `python -m X` a
module that exists, `sh X` / `. X` a script that exists, `pip install -e ".[group]"` an optional
group of pyproject.toml. A block whose first line says what it needs or how long it takes
(`# needs ...`, `# takes ...`, `# writes ...`) is only checked. Every other block also runs, in
page order (README.md first, then docs/ by name), in a copy of the repository on the tiny
synthetic LLP with one epoch per training command; pip and pytest are never run from here.
"""
import contextlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.e2e

ROOT = Path(REPO_ROOT)
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\S*)\s*$")
NOT_RUN = re.compile(r"^#\s*(needs|takes|writes)\b")
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
OTHER_SHELL_FENCES = {"bash", "shell", "console", "zsh", "shell-session"}
# the entry point: the pipeline scripts ("$@"), sweep.py and compare_estimators.py (after `--`)
# hand their extra flags on to it
MAIN_SCRIPT = "main_DHHN.py"
# what the run blocks are given: the tiny synthetic LLP, one epoch per training command, no display
RUN_ENV = {"SYNTHETIC_SIZE": "tiny", "MPLBACKEND": "Agg"}
SHORT_TRAINING = "--epochs 1"
RUN_PREAMBLE = "set -e"
TRAINING_MODES = ("train", "retrain")
BLOCK_TIMEOUT_S = 300
# outputs and caches of this checkout that a copy must not take along (the copy makes its own)
NOT_COPIED = {".git", "models", "runs", "pictures", "parsed", ".venv", ".whl"}
NOT_COPIED_ANYWHERE = {"__pycache__", ".pytest_cache", ".packed_cache"}
# a front page, not a manual (STYLE.md: DETR's README is 12 KB); the manuals are docs/
README_MAX_BYTES = 15_500


def split_unquoted(text, separator):
    """`text` cut at every `separator` outside single or double quotes."""
    parts, current, quote, index = [], [], None, 0
    while index < len(text):
        char = text[index]
        if quote is None and text.startswith(separator, index):
            parts.append("".join(current))
            current, index = [], index + len(separator)
            continue
        if char in "'\"" and quote in (None, char):
            quote = None if quote == char else char
        current.append(char)
        index += 1
    return parts + ["".join(current)]


def strip_comment(line):
    """The line without a shell comment (a # at its start or after white space, outside quotes)."""
    quote = None
    for index, char in enumerate(line):
        if char in "'\"" and quote in (None, char):
            quote = None if quote == char else char
        elif char == "#" and quote is None and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


@dataclass
class Block:
    page: Path
    line: int     # of the opening fence, 1-based
    lines: list

    @property
    def name(self):
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self):
        return not (self.lines and NOT_RUN.match(self.lines[0].strip()))

    def logical_lines(self):
        """Command lines with continuations joined and comments removed."""
        joined, pending = [], ""
        for line in self.lines:
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command = strip_comment(pending + line).strip()
            pending = ""
            if command:
                joined.append(command)
        return joined


def fenced_blocks(page):
    """[(language, Block)] of every fenced block of a markdown page."""
    blocks, opened = [], None
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        match = FENCE.match(line)
        if opened is None and match:
            opened = (match.group(1), Block(page, number, []))
        elif opened is not None and line.strip() == "```":
            blocks.append(opened)
            opened = None
        elif opened is not None:
            opened[1].lines.append(line)
    assert opened is None, f"{page}: a fence opened at line {opened[1].line} is never closed"
    return blocks


def sh_blocks(page):
    return [block for language, block in fenced_blocks(page) if language == "sh"]


SH_BLOCKS = [block for page in PAGES for block in sh_blocks(page)]


def split_command(text, variables):
    """(environment prefix, words) of one simple command, with the block's own variables
    expanded; words == [] for a plain assignment, which then updates `variables`."""
    words = shlex.split(text)
    if words[:1] == ["export"]:
        words = words[1:]
    prefix = {}
    while words and ASSIGNMENT.match(words[0]):
        name, value = words.pop(0).split("=", 1)
        prefix[name] = expand_text(value, variables)
    if not words:
        variables.update(prefix)
        return prefix, []
    return prefix, [expanded for word in words for expanded in expand_word(word, variables)]


def expand_text(text, variables):
    """$NAME and ${NAME} of the block's own variables replaced; others (set by a sourced script)
    stay as they are."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                  lambda match: variables.get(match.group(1) or match.group(2), match.group(0)), text)


def expand_word(word, variables):
    """An unquoted $NAME of a known variable splits into words, as the shell does."""
    match = re.fullmatch(r"\$\{?(\w+)\}?", word)
    if match and match.group(1) in variables:
        return shlex.split(variables[match.group(1)])
    return [expand_text(word, variables)]


def load_module(relative_path):
    """A file of the repository as a module, without running its command line."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(f"docs_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_PARSERS = {}


def parser_of(script):
    """get_args_parser() of a script of the repository, by its path relative to the root."""
    if script not in _PARSERS:
        module = load_module(script)
        assert hasattr(module, "get_args_parser"), f"{script} has no get_args_parser() to check flags against"
        parser = module.get_args_parser()
        parser.allow_abbrev = False   # a page spells every flag out; an abbreviation breaks when a flag is added
        _PARSERS[script] = parser
    return _PARSERS[script]


def parse(script, argv, where):
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            return parser_of(script).parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: {script} refuses {shlex.join(argv)}\n{errors.getvalue()}")


def check_python(argv, where):
    if argv[0] == "-m":
        module, rest = argv[1], argv[2:]
        if module == "pytest":
            for path in (word for word in rest if not word.startswith("-")):
                assert (ROOT / path).exists(), f"{where}: pytest is given {path}, which does not exist"
        else:
            assert importlib.util.find_spec(module) is not None, f"{where}: no module {module}"
        return
    script, flags = argv[0], argv[1:]
    assert (ROOT / script).is_file(), f"{where}: {script} does not exist"
    if script == "scripts/sweep.py":
        own, extra = (flags[:flags.index("--")], flags[flags.index("--") + 1:]) if "--" in flags else (flags, [])
        args = parse(script, own, where)
        parse(MAIN_SCRIPT, extra, where)
        for config in args.config:
            parse(MAIN_SCRIPT, shlex.split(config.split("=", 1)[1]), f"{where} (--config {config!r})")
    elif script == "scripts/compare_estimators.py":
        parse(MAIN_SCRIPT, parse(script, flags, where).flags, where)
    else:
        parse(script, flags, where)


def check_shell_script(argv, where):
    script = ROOT / argv[0]
    assert script.is_file(), f"{where}: {argv[0]} does not exist"
    if argv[1:]:
        text = script.read_text()
        assert MAIN_SCRIPT in text and '"$@"' in text, f"{where}: {argv[0]} takes no flags"
        parse(MAIN_SCRIPT, argv[1:], where)


def optional_groups():
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return set(tomllib.load(handle)["project"].get("optional-dependencies", {}))


def check_pip(argv, where):
    assert argv[0] == "install", f"{where}: pip {argv[0]}: only pip install is shown"
    for word in argv[1:]:
        match = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", word)
        if match:
            assert (ROOT / "pyproject.toml").is_file(), f"{where}: pip install {word} needs a pyproject.toml"
            missing = set((match.group(1) or "").split(",")) - {""} - optional_groups()
            assert not missing, f"{where}: pyproject.toml has no optional group {sorted(missing)}"


def check_command(words, where):
    program, argv = words[0], words[1:]
    assert argv or program == "pip", f"{where}: {program} alone"
    if program in ("python", "python3"):
        check_python(argv, where)
    elif program == "sh":
        check_shell_script(argv, where)
    elif program in (".", "source"):
        assert (ROOT / argv[0]).is_file(), f"{where}: {argv[0]} does not exist"
    elif program == "pip":
        check_pip(argv, where)
    else:
        pytest.fail(f"{where}: {program}: not a command these docs are expected to show")


def is_skipped_when_run(words):
    """pip installs and the test suite: never run from inside the test suite."""
    return words[0] == "pip" or words[:3] in (["python", "-m", "pytest"], ["python3", "-m", "pytest"])


def is_training(words):
    if words[0] == "sh":
        script = ROOT / words[1]
        return script.is_file() and MAIN_SCRIPT in script.read_text()
    return (words[1:2] == [MAIN_SCRIPT] and "--mode" in words
            and words[words.index("--mode") + 1:words.index("--mode") + 2] in [[mode] for mode in TRAINING_MODES])


def runnable_script(block):
    """The block as a shell script for the run: pip and pytest left out, every training command
    shortened to one epoch (the pipeline scripts pass extra flags through to main_DHHN.py)."""
    lines, variables = [RUN_PREAMBLE], {}
    for line in block.logical_lines():
        kept = []
        for part in split_unquoted(line, "&&"):
            _, words = split_command(part, variables)
            if words and is_skipped_when_run(words):
                continue
            kept.append(part.strip() + (f" {SHORT_TRAINING}" if words and is_training(words) else ""))
        if kept:
            lines.append(" && ".join(kept))
    return "\n".join(lines)


@pytest.mark.parametrize("block", SH_BLOCKS, ids=[block.name for block in SH_BLOCKS])
def test_every_command_names_what_exists_and_passes_accepted_flags(block):
    variables = {}
    commands = [words for line in block.logical_lines() for part in split_unquoted(line, "&&")
                for words in [split_command(part, variables)[1]] if words]
    assert commands, f"{block.name}: an sh block without a command"
    for words in commands:
        check_command(words, block.name)


def test_commands_are_only_in_sh_blocks():
    for page in PAGES:
        for language, block in fenced_blocks(page):
            assert language not in OTHER_SHELL_FENCES, f"{block.name}: a {language} block escapes these checks; use sh"
            if language != "sh" and block.lines:
                first = block.lines[0].lstrip()
                assert not re.match(r"(\$ |python |sh |pip )", first), \
                    f"{block.name}: commands in a {language or 'plain'} block escape these checks; use sh"


def test_the_readme_quick_start_shows_the_contract_commands():
    heading = README.read_text().splitlines().index("## Quick start") + 1
    quick_start = next(block for block in sh_blocks(README) if block.line > heading)
    lines = [strip_comment(line).strip() for line in quick_start.lines]
    contract = lines.index("pip install -e . && sh DHHN_origin.sh")
    assert any(line.startswith("pip install torch==") for line in lines[:contract])
    assert "python -m pytest -q tests" in lines     # CI runs exactly this


def github_anchor(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def without_fences(page):
    """The page without its fenced blocks, where nothing is a link or a heading."""
    return re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)


def anchors_of(page):
    return {github_anchor(heading) for heading in re.findall(r"^#{1,6} (.+)$", without_fences(page), flags=re.M)}


def test_the_pages_link_to_what_exists():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`\n]*`", "", without_fences(page))):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: the link {target} leads nowhere"
            if anchor and linked.suffix == ".md":
                assert anchor in anchors_of(linked), f"{page.name}: {linked.name} has no heading #{anchor}"


def test_the_readme_is_a_front_page_that_links_every_manual():
    text = README.read_text()
    assert len(text.encode()) <= README_MAX_BYTES
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in text, f"README.md does not link docs/{page.name}"


# ------------------------------------------------------------------------------------------------
# the blocks that run

def ignore_outputs(folder, names):
    ignored = {name for name in names if name in NOT_COPIED_ANYWHERE or name.endswith((".pyc", ".egg-info"))}
    if Path(folder) == ROOT:
        ignored |= NOT_COPIED & set(names)
    if Path(folder) in (ROOT / "data", ROOT / "feats"):
        ignored |= set(names) - {"README.md"}
    return ignored


@pytest.fixture(scope="module")
def block_runs(tmp_path_factory):
    """[(block, script, CompletedProcess)] of every block that runs, run in page order in one
    copy of the repository, so that a block may use what an earlier one made (the quick start's
    models/DHHN) and nothing is written into the checkout."""
    copy = tmp_path_factory.mktemp("docs_commands") / "repository"
    shutil.copytree(ROOT, copy, ignore=ignore_outputs)
    python_path = os.pathsep.join(filter(None, [str(copy), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, **RUN_ENV, "PYTHONPATH": python_path}
    runs = []
    for block in (block for block in SH_BLOCKS if block.runs):
        script = runnable_script(block)
        if script == RUN_PREAMBLE:   # pip lines only
            continue
        done = subprocess.run(["sh", "-c", script], cwd=copy, env=env, capture_output=True, text=True,
                              timeout=BLOCK_TIMEOUT_S)
        runs.append((block, script, done))
    return runs


def test_every_unmarked_block_runs(block_runs):
    failed = [f"{block.name} (exit code {done.returncode}):\n{script}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
              for block, script, done in block_runs if done.returncode != 0]
    assert not failed, "\n\n".join(failed)


def quick_start_run(block_runs):
    runs = [(block, done) for block, script, done in block_runs
            if block.page == README and "sh DHHN_origin.sh --epochs 1" in script]
    assert runs, "the README's quick start (sh DHHN_origin.sh) did not run"
    return runs[0][1]


def test_the_quick_start_fills_the_readme_blocks(block_runs, tmp_path):
    readme_outputs = load_module("scripts/readme_outputs.py")
    done = quick_start_run(block_runs)
    assert done.returncode == 0, done.stderr[-3000:]
    log = tmp_path / "quick_start.log"
    log.write_text(done.stdout)
    readme = tmp_path / "README.md"
    shutil.copy(README, readme)

    def run(*flags):
        return readme_outputs.main(readme_outputs.get_args_parser().parse_args(
            ["--from_log", str(log), "--readme", str(readme), *flags]))

    # one epoch on the tiny set cannot print the demo's numbers that the README shows
    assert run("--check") == readme_outputs.EXIT_DIFFERS
    assert readme.read_text() == README.read_text()
    assert run() == 0
    assert run("--check") == 0
    filled, original = readme.read_text().splitlines(), README.read_text().splitlines()
    # the blocks keep their shape (titles, rows), and nothing outside the markers changes
    assert len(filled) == len(original)
    changed = [index for index, (new, old) in enumerate(zip(filled, original)) if new != old]
    inside = set()
    for name in readme_outputs.BLOCKS:
        begin = original.index(f"<!-- {name}:begin -->")
        inside |= set(range(begin, original.index(f"<!-- {name}:end -->")))
    assert changed and set(changed) <= inside
    assert all(filled[index].split()[0] == original[index].split()[0] for index in changed)
