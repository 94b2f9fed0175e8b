"""A battery of the mistakes and faults a new user makes, tried as that user would: every case is a real
subprocess of the project's entry points (main_DHHN.py, DHHN_origin.sh, DHHN_refinement.sh, VALOR.sh,
scripts/*.py, parse_video.py) on a tiny synthetic LLP (48/16/16 videos) and a few tiny trained runs, all
made in a temp folder, and each outcome is classified against docs/RELIABILITY.md and the README:

  handled  a bad input refused with exit code 2 (130 when interrupted) and one `error: ...` line on stderr
           (a listing under it is fine) that names the flag, file or row, with no traceback and nothing
           written that should not be; work that should succeed exits 0 and does what it promises
  weak     refused, but the message does not name the flag or file, a traceback follows the message, the
           exit code is not the promised one, something was left behind; or exit 0 after a warning where
           the run should have stopped; or a promised progress line is missing
  wrong    exit 0 with wrong or mixed numbers or silently ignored input, a crash with a traceback, or work
           that should succeed refused

    python scripts/reliability_battery.py                        # every case; about 15 minutes on 2 cores
    python scripts/reliability_battery.py --only feat-nan rescore-mixed-row-files --keep
    python scripts/reliability_battery.py --list                 # the cases, what each user did
    python scripts/reliability_battery.py --out battery.json     # also every result as JSON

The battery reports and changes nothing of the project; it is not part of the test suite. A case whose
setup fails (a fixture run) is reported as `setup-failed`, and a bug of the battery itself as
`battery-error`; neither counts as a finding.
"""
import argparse
import functools
import hashlib
import io
import json
import os
import pickle
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS_DIR = os.path.join(REPO_ROOT, "tests")
PYTHON = sys.executable
MAIN = os.path.join(REPO_ROOT, "main_DHHN.py")
PARSE_VIDEO = os.path.join(REPO_ROOT, "parse_video.py")

HANDLED, WEAK, WRONG = "handled", "weak", "wrong"
SETUP_FAILED, BATTERY_ERROR = "setup-failed", "battery-error"
FINDING_CLASSES = (HANDLED, WEAK, WRONG)
SEVERITY = {HANDLED: 0, WEAK: 1, WRONG: 2}
# main_DHHN.py's "error: ..." and argparse's "prog.py: error: ..."
ERROR_LINE = re.compile(r"^(?:[\w.\-]+: )?error: ")
TRACEBACK = "Traceback (most recent call last)"
LOCK_FILE = re.compile(r"\.[^/]+\.lock")
COMMAND_TIMEOUT = 600
SPLIT_FILES = {"train": "AVVP_train.csv", "val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv"}
EVAL_FILES = {"audio": "AVVP_eval_audio.csv", "visual": "AVVP_eval_visual.csv"}
FEATURE_FOLDERS = ("vggish", "res152", "r2plus1d_18")
YOUTUBE_ID_LENGTH = 11
# ulimit -f counts 512-byte blocks in sh: ~1 MB stops the first 37 MB best checkpoint; ~51 MB lets the
# three best files of an epoch through and stops its 190 MB _last.pt
FILE_LIMIT_FIRST_WRITE = 2000
FILE_LIMIT_LAST_WRITE = 100000
# the time a tiny run may take to finish epoch 1 on a loaded 2-core machine
EPOCH_WAIT = 300


class SetupFailed(Exception):
    """A fixture (data, a trained run, an export) could not be made; the cases that need it are not run."""


@dataclass
class Outcome:
    """What one subprocess did: returncode None when the battery killed it after its timeout."""
    argv: list
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def text(self):
        return self.stdout + self.stderr


@dataclass
class Started:
    process: subprocess.Popen
    argv: list
    stdout_path: str
    stderr_path: str
    files: tuple
    began: float


@dataclass
class Case:
    id: str
    what: str
    expected: str
    body: object


@dataclass
class Result:
    id: str
    what: str
    expected: str
    commands: list
    cls: str
    reason: str
    seconds: float
    returncode: int | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    extra: dict = field(default_factory=dict)


CASES = {}


def case(case_id, what, expected):
    """Register a case body(battery) -> (class, reason)."""
    def register(body):
        if case_id in CASES:
            raise ValueError(f"two cases named {case_id}")
        CASES[case_id] = Case(case_id, what, expected, body)
        return body
    return register


# ------------------------------------------------------------------------------------------------
# judging an outcome

def error_block(stderr):
    """stderr from its first error line on (the message and any listing under it), or ''."""
    lines = stderr.splitlines()
    for index, line in enumerate(lines):
        if ERROR_LINE.match(line):
            return "\n".join(lines[index:])
    return ""


def last_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# (path, shown as): the battery's temp folder and the checkout, so that reasons stay readable
DISPLAY_PATHS = [(REPO_ROOT, "$REPO")]


def shown(text):
    text = str(text)
    for path, name in DISPLAY_PATHS:
        text = text.replace(path, name)
    return text


def short(text, limit=220):
    text = " ".join(shown(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def worst(classes):
    return max(classes, key=SEVERITY.__getitem__, default=HANDLED)


def refused(out, names=(), code=2, checks=(), if_passed=""):
    """(class, reason) of a case that must stop: exit `code`, one error line naming every one of `names`,
    no traceback; checks: (passed, class if not, what is wrong) of what it must not have written."""
    rc = out.returncode
    if rc is None:
        return WRONG, f"still running after {out.seconds:.0f} s; the battery killed it"
    block = error_block(out.stderr)
    if rc == 0:
        said = [name for name in names if name in out.text]
        consequence = f" ({if_passed})" if if_passed else ""
        if said and "warning" in out.text.lower():
            return WEAK, f"exit 0: a warning naming {said[0]!r}, then it went on{consequence}"
        return WRONG, f"exit 0: the mistake went unnoticed{consequence}"
    if rc < 0:
        return WRONG, f"killed by signal {-rc}: {short(last_line(out.stderr))}"
    if TRACEBACK in out.stderr and not block:
        return WRONG, f"crash (exit {rc}) with a traceback: {short(last_line(out.stderr))}"
    problems = []
    if rc != code:
        problems.append((WEAK, f"exit {rc}, not {code}"))
    if TRACEBACK in out.stderr:
        problems.append((WEAK, "a traceback besides the message"))
    if not block:
        problems.append((WEAK, "no 'error: ' line on stderr"))
    elif sum(bool(ERROR_LINE.match(line)) for line in out.stderr.splitlines()) > 1:
        problems.append((WEAK, "several error lines"))
    missing = [name for name in names if name not in block]
    if missing:
        problems.append((WEAK, "the message does not name " + ", ".join(repr(name) for name in missing)))
    problems += [(cls, what) for passed, cls, what in checks if not passed]
    shown = short(block or last_line(out.stderr) or out.stdout[-200:])
    if problems:
        return worst(cls for cls, _ in problems), "; ".join(what for _, what in problems) + f" | {shown}"
    return HANDLED, f"exit {code}: {shown}"


def succeeded(out, checks=(), note=""):
    """(class, reason) of a case that must work: exit 0 and every check (passed, class if not, what is
    wrong) passing."""
    rc = out.returncode
    if rc is None:
        return WRONG, f"still running after {out.seconds:.0f} s; the battery killed it"
    if rc != 0:
        block = error_block(out.stderr)
        if TRACEBACK in out.stderr and not block:
            return WRONG, f"crash (exit {rc}) with a traceback: {short(last_line(out.stderr))}"
        return WRONG, f"refused work that should succeed (exit {rc}): {short(block or last_line(out.text))}"
    failed = [(cls, what) for passed, cls, what in checks if not passed]
    if TRACEBACK in out.stderr:
        failed.append((WEAK, "a traceback on stderr"))
    if failed:
        return worst(cls for cls, _ in failed), "exit 0, but " + "; ".join(what for _, what in failed)
    return HANDLED, "exit 0" + (f": {note}" if note else "")


def has(out, text, cls, what=None):
    """A check that `text` appears in the output."""
    return text in out.text, cls, what or f"no {text!r} in the output"


def has_line(out, pattern, cls, what):
    return re.search(pattern, out.text, re.MULTILINE) is not None, cls, what


# ------------------------------------------------------------------------------------------------
# files

def listing(folder):
    """{relative path: (size, mtime_ns, inode)} of every file under `folder` ({} when it does not exist)."""
    found = {}
    if not os.path.isdir(folder):
        return found
    for directory, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(directory, name)
            try:
                stat = os.lstat(path)
            except FileNotFoundError:
                continue
            found[os.path.relpath(path, folder)] = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    return found


def written_since(folder, before, allow_locks=True):
    """Files under `folder` created or changed since the listing `before`, other than run locks; a changed
    one is marked "(overwritten)"."""
    after = listing(folder)
    return sorted(path + (" (overwritten)" if path in before else "") for path, stat in after.items()
                  if before.get(path) != stat and not (allow_locks and LOCK_FILE.fullmatch(path)))


def clobber(path, data):
    """Write `data` as a new file at `path`: run folders are hard-linked clones, so writing into the
    existing inode would change the source run too."""
    if os.path.lexists(path):
        os.remove(path)
    with open(path, "wb") as handle:
        handle.write(data)


def clone(source, target):
    """A copy of a run folder made of hard links: a _last.pt is 190 MB, and every project write goes
    through a temp file and a rename, so nothing written in the clone reaches the source. Lock files stay
    out: two folders sharing one lock inode would lock each other."""
    shutil.copytree(source, target, copy_function=os.link, ignore=shutil.ignore_patterns(".*.lock"))
    return target


def edit_lines(path, change):
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    clobber(path, ("\n".join(change(lines)) + "\n").encode("utf-8"))


def npy_bytes(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


class RunsCode:
    """Unpickling this runs `touch marker`: what a malicious checkpoint or flags file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


# ------------------------------------------------------------------------------------------------
# the battery: subprocesses, fixtures, folders

class Battery:
    def __init__(self, work):
        self.work = work
        self.llp = os.path.join(work, "llp")
        self.log_dir = os.path.join(work, "logs")
        os.makedirs(self.log_dir)
        self.built = {}
        self.commands = []
        self.processes = []
        self.frozen = []
        self.counter = 0
        self.last = None
        DISPLAY_PATHS.insert(0, (work, "$WORK"))

    # paths ------------------------------------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def fresh(self, *parts):
        """A path under the case folders that does not exist yet (its parent does)."""
        path = self.path("cases", *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            raise RuntimeError(f"{path} exists: two cases share a folder")
        return path

    def made(self, *parts):
        path = self.fresh(*parts)
        os.makedirs(path)
        return path

    def show(self, text):
        return shown(text)

    def names(self, split, root=None):
        with open(os.path.join(root or self.llp, "data", SPLIT_FILES[split]), encoding="utf-8") as handle:
            return [line.split("\t")[0] for line in handle.read().splitlines()[1:] if line.strip()]

    def feature(self, root, folder, name):
        return os.path.join(root, "feats", folder, name[:YOUTUBE_ID_LENGTH] + ".npy")

    def data_file(self, name, root=None):
        return os.path.join(root or self.llp, "data", name)

    def variant(self, name, copy=()):
        """An LLP root of its own: data/ copied (cases edit it), the feature folders of `copy` copied and
        the others linked to the tiny LLP's."""
        root = self.path("roots", name)
        os.makedirs(os.path.join(root, "feats"))
        shutil.copytree(os.path.join(self.llp, "data"), os.path.join(root, "data"))
        shutil.copy(os.path.join(self.llp, ".synthetic_complete"), root)
        for folder in FEATURE_FOLDERS:
            source, target = os.path.join(self.llp, "feats", folder), os.path.join(root, "feats", folder)
            if folder in copy:
                shutil.copytree(source, target)
            else:
                os.symlink(source, target)
        return root

    def freeze(self, path):
        """Make a folder unwritable. As root, chmod stops nothing: the immutable attribute (chattr +i)
        does, refusing every new file with EPERM, as a read-only mount refuses it with EROFS."""
        if os.geteuid() != 0:
            os.chmod(path, 0o555)
            self.frozen.append(("chmod", path))
            return "chmod 555"
        result = subprocess.run(["chattr", "+i", path], capture_output=True, text=True)
        if result.returncode != 0:
            raise SetupFailed(f"chattr +i {path}: {result.stderr.strip()} (cannot simulate a read-only folder)")
        self.frozen.append(("chattr", path))
        return "chattr +i"

    def thaw_all(self):
        for how, path in reversed(self.frozen):
            if how == "chmod":
                os.chmod(path, 0o755)
            else:
                subprocess.run(["chattr", "-i", path], capture_output=True)
        self.frozen = []

    # flags ------------------------------------------------------------------------------------
    def data(self, root=None):
        return ["--llp_root", root or self.llp, "--device", "cpu", "--progress", "off"]

    def train_flags(self, save, *extra, root=None):
        return ["--mode", "train", *self.data(root), "--model_save_dir", save, "--batch-size", "16", "--epochs", "1",
                *extra]

    def eval_flags(self, save, *extra, mode="test", root=None):
        return ["--mode", mode, *self.data(root), "--model_save_dir", save, *extra]

    def eval_csv_flags(self, root=None):
        return ["--eval_audio_csv", self.data_file(EVAL_FILES["audio"], root),
                "--eval_visual_csv", self.data_file(EVAL_FILES["visual"], root)]

    # subprocesses -----------------------------------------------------------------------------
    def env(self, extra=None):
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = "1"
        env["PATH"] = os.path.dirname(PYTHON) + os.pathsep + env.get("PATH", "")
        # a user's log file is block-buffered: the promised progress lines must be flushed by the code
        env.pop("PYTHONUNBUFFERED", None)
        env.update(extra or {})
        return env

    def describe(self, argv, cwd, env, file_blocks):
        words = shlex.join(str(word) for word in argv)
        prefix = " ".join(f"{key}={shlex.quote(str(value))}" for key, value in (env or {}).items())
        text = (f"{prefix} " if prefix else "") + words
        if file_blocks is not None:
            text = f"ulimit -f {file_blocks}; {text}"
        if cwd and cwd != self.work:
            text = f"cd {shlex.quote(cwd)} && {text}"
        return self.show(text)

    def start(self, argv, cwd=None, env=None, file_blocks=None, record=True):
        self.counter += 1
        stem = os.path.join(self.log_dir, f"{self.counter:04d}")
        command = [str(word) for word in argv]
        if file_blocks is not None:
            # no small filesystem can be mounted here: a file-size limit makes big writes fail with EFBIG,
            # an OSError like ENOSPC (Python ignores SIGXFSZ)
            command = ["sh", "-c", f'ulimit -f {file_blocks} && exec "$@"', "sh", *command]
        stdout, stderr = open(stem + ".out", "w"), open(stem + ".err", "w")
        # its own session: a Ctrl-C is sent to its process group only, and a timeout kills all of it
        process = subprocess.Popen(command, cwd=cwd or self.work, env=self.env(env), stdout=stdout, stderr=stderr,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        if record:
            self.commands.append(self.describe(argv, cwd, env, file_blocks))
        started = Started(process, command, stem + ".out", stem + ".err", (stdout, stderr), time.monotonic())
        self.processes.append(started)
        return started

    def finish(self, started, timeout=COMMAND_TIMEOUT):
        try:
            returncode = started.process.wait(timeout=max(1, timeout - (time.monotonic() - started.began)))
        except subprocess.TimeoutExpired:
            self.signal(started, signal.SIGKILL)
            started.process.wait()
            returncode = None
        for handle in started.files:
            handle.close()
        if started in self.processes:
            self.processes.remove(started)
        with open(started.stdout_path, errors="replace") as out, open(started.stderr_path, errors="replace") as err:
            self.last = Outcome(started.argv, returncode, out.read(), err.read(), time.monotonic() - started.began)
        return self.last

    def run(self, argv, cwd=None, env=None, timeout=COMMAND_TIMEOUT, file_blocks=None, record=True):
        return self.finish(self.start(argv, cwd, env, file_blocks, record), timeout)

    def main(self, *flags, **options):
        return self.run([PYTHON, MAIN, *flags], **options)

    def script(self, name, *flags, **options):
        return self.run([PYTHON, os.path.join(REPO_ROOT, "scripts", f"{name}.py"), *flags], **options)

    def shell(self, name, *flags, env=None, **options):
        return self.run(["sh", os.path.join(REPO_ROOT, name), *flags], env=env, **options)

    def parse(self, *flags, **options):
        return self.run([PYTHON, PARSE_VIDEO, *flags], **options)

    def signal(self, started, signum):
        try:
            os.killpg(started.process.pid, signum)
        except ProcessLookupError:
            pass

    def wait_for(self, condition, started, timeout=EPOCH_WAIT):
        """Poll until condition() holds (True), or the process ends or the time is up (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            if started.process.poll() is not None:
                return condition()
            time.sleep(0.05)
        return False

    def stop_all(self):
        for started in list(self.processes):
            self.signal(started, signal.SIGKILL)
            self.finish(started, timeout=30)

    # fixtures ---------------------------------------------------------------------------------
    def setup(self, argv, what, expect=0, **options):
        out = self.run(argv, record=False, **options)
        if out.returncode != expect:
            raise SetupFailed(f"{what}: {self.describe(argv, options.get('cwd'), options.get('env'), None)} exited "
                              f"{out.returncode}: {short(error_block(out.stderr) or last_line(out.text))}")
        return out

    def fixture(self, name):
        if name not in self.built:
            try:
                self.built[name] = (FIXTURES[name](self), None)
            except SetupFailed as error:
                self.built[name] = (None, error)
        value, error = self.built[name]
        if error is not None:
            raise error
        return value


# ------------------------------------------------------------------------------------------------
# fixtures: made once, on first use, and shared by the cases that only read them

FIXTURES = {}


def fixture(function):
    FIXTURES[function.__name__] = function
    return function


def train_fixture(b, name, *extra):
    save = b.path("runs", name)
    b.setup([PYTHON, MAIN, *b.train_flags(save, *extra)], f"training the {name} run")
    return save


@fixture
def dhhn(b):
    return train_fixture(b, "dhhn")


@fixture
def han(b):
    return train_fixture(b, "han", "--model", "han")


def export_fixture(b, run, mode, name, *extra):
    export = b.path("exports", name)
    b.setup([PYTHON, MAIN, *b.eval_flags(b.fixture(run), "--export_dir", export, *extra, mode=mode)],
            f"exporting {name}")
    return export


@fixture
def test_export(b):
    export = export_fixture(b, "dhhn", "test", "dhhn_test")
    # kept now: cases that wrongly succeed in the run's folder would overwrite the run's summary
    shutil.copy(os.path.join(b.fixture("dhhn"), "DHHN_test_summary.json"), export + ".summary.json")
    return export


def test_tables(b):
    with open(b.fixture("test_export") + ".summary.json") as handle:
        return json.load(handle)["tables"]


@fixture
def val_export(b):
    return export_fixture(b, "dhhn", "val", "dhhn_val")


@fixture
def han_test_export(b):
    return export_fixture(b, "han", "test", "han_test", "--model", "han")


@fixture
def nan_run(b):
    """The dhhn run with every weight of its three selected checkpoints set to NaN."""
    import torch

    from utils import checkpoint
    b.fixture("test_export")   # its summary, in the source, is what the NaN cases must not overwrite
    save = clone(b.fixture("dhhn"), b.path("runs", "nan"))
    for role in ("audio", "visual", "overall"):
        path = os.path.join(save, f"DHHN_best_{role}.pt")
        content = checkpoint.load(path)
        content["model"] = {key: torch.full_like(value, float("nan")) if value.is_floating_point() else value
                            for key, value in content["model"].items()}
        checkpoint.save(path, **content)
    return save


@fixture
def killed(b):
    """A run of 3 planned epochs killed with SIGKILL as soon as epoch 1 is on disk (its log line is
    written after its _last.pt)."""
    save = b.path("runs", "killed")
    started = b.start([PYTHON, MAIN, *b.train_flags(save, "--epochs", "3")], record=False)
    if not b.wait_for(lambda: os.path.exists(os.path.join(save, "DHHN_train_log.jsonl")), started):
        b.signal(started, signal.SIGKILL)
        out = b.finish(started)
        raise SetupFailed(f"the run to kill never finished epoch 1: {short(last_line(out.text))}")
    b.signal(started, signal.SIGKILL)
    b.finish(started)
    return save


@fixture
def sigtermed(b):
    """(folder, outcome) of a run of 4 planned epochs sent SIGTERM as soon as epoch 1 is on disk."""
    save = b.path("runs", "sigtermed")
    started = b.start([PYTHON, MAIN, *b.train_flags(save, "--epochs", "4")])
    if not b.wait_for(lambda: os.path.exists(os.path.join(save, "DHHN_train_log.jsonl")), started):
        b.signal(started, signal.SIGKILL)
        raise SetupFailed(f"the run never finished epoch 1: {short(last_line(b.finish(started).text))}")
    b.signal(started, signal.SIGTERM)
    return save, b.finish(started)


@fixture
def llp64(b):
    """The tiny LLP with 64-dimensional audio features (the published ones have 128)."""
    root = b.variant("llp64")
    os.remove(os.path.join(root, "feats", "vggish"))
    source, target = os.path.join(b.llp, "feats", "vggish"), os.path.join(root, "feats", "vggish")
    os.makedirs(target)
    for name in os.listdir(source):
        if name.endswith(".npy"):
            np.save(os.path.join(target, name), np.load(os.path.join(source, name))[:, :64])
    return root


@fixture
def valor_release(b):
    """A folder in the layout download_models.py --from takes: model_VALOR/checkpoint_best.pt, seeded
    random weights in VALOR's key layout (tests/valor_release_fixtures.py)."""
    import torch
    sys.path.insert(0, TESTS_DIR)
    from valor_release_fixtures import valor_state_dict
    source = b.path("releases", "valor")
    os.makedirs(os.path.join(source, "model_VALOR"))
    torch.save(valor_state_dict(0, 512, 1), os.path.join(source, "model_VALOR", "checkpoint_best.pt"))
    return source


def valor_layout(b, name):
    """A folder as VALOR's scripts expect it (./data/AVVP_*.csv, ./data/feats/, ./data/CLAP and
    ./data/CLIP/segment_pseudo_labels), holding the tiny LLP; no models/ yet."""
    root = b.path(name)
    data = os.path.join(root, "data")
    os.makedirs(data)
    for entry in os.listdir(os.path.join(b.llp, "data")):
        if entry.endswith(".csv"):
            shutil.copy(os.path.join(b.llp, "data", entry), data)
    os.symlink(os.path.join(b.llp, "feats"), os.path.join(data, "feats"))
    for kind in ("CLAP", "CLIP"):
        os.makedirs(os.path.join(data, kind, "segment_pseudo_labels"))
    return root


VALOR_TEST_WORDS = [   # VALOR's scripts/test_valor.sh, its entry point replaced by main_DHHN.py
    "--mode", "test", "--model", "MMIL_Net", "--model_name", "model_VALOR", "--audio_dir", "./data/feats/vggish",
    "--video_dir", "./data/feats/res152", "--st_dir", "./data/feats/r2plus1d_18", "--label_train",
    "./data/AVVP_train.csv", "--label_val", "./data/AVVP_val_pd.csv", "--label_test", "./data/AVVP_test_pd.csv",
    "--hidden_dim", "512", "--nhead", "8", "--ff_dim", "1024", "--num_layers", "1", "--norm_where", "post_norm",
    "--v_pseudo_data_dir", "./data/CLIP/segment_pseudo_labels", "--a_pseudo_data_dir",
    "./data/CLAP/segment_pseudo_labels"]


@fixture
def clips(b):
    """Small mp4 files (tests/video_fixtures.py): good ones and one of each kind of bad video."""
    sys.path.insert(0, TESTS_DIR)
    from video_fixtures import write_corrupt_file, write_test_video, write_truncated_video
    folder = b.path("videos")
    bad = os.path.join(folder, "bad")
    os.makedirs(bad)
    size = (64, 48)
    paths = {"good": write_test_video(os.path.join(bad, "good.mp4"), 3, size=size)["path"],
             "mute": write_test_video(os.path.join(bad, "mute.mp4"), 3, size=size, audio=False)["path"],
             "blink": write_test_video(os.path.join(bad, "blink.mp4"), 0.5, size=size)["path"],
             "corrupt": write_corrupt_file(os.path.join(bad, "corrupt.mp4")),
             "truncated": write_truncated_video(os.path.join(bad, "truncated.mp4"), 3, size=size)["path"],
             "blip": write_test_video(os.path.join(folder, "blip.mp4"), 1, size=size)["path"],
             "long": write_test_video(os.path.join(folder, "long.mp4"), 31, size=size)["path"]}
    return {"folder": bad, **paths}


@fixture
def parsed_features(b):
    """A --features_dir of parse_video.py holding the blip clip's features (random weights)."""
    features = b.path("parsed_features")
    b.setup([PYTHON, PARSE_VIDEO, b.fixture("clips")["blip"], "--checkpoint", os.path.join(b.fixture("dhhn"), "DHHN"),
             "--out_dir", b.path("parsed_warmup"), "--features_dir", features, "--random_weights", "--device", "cpu",
             "--progress", "off"], "parsing the blip clip once")
    return features


def export_rows(export):
    with open(os.path.join(export, "manifest.json")) as handle:
        return json.load(handle)["rows"]


def main_row(export):
    return next(iter(export_rows(export).values()))


# ------------------------------------------------------------------------------------------------
# 1. impossible numbers: refused before any work, so the run folder is never made

NUMBER_CASES = [
    ("num-epochs-0", ("--epochs", "0"), "--epochs 0"),
    ("num-epochs-negative", ("--epochs", "-3"), "--epochs -3"),
    ("num-batch-size-0", ("--batch-size", "0"), "--batch-size 0"),
    ("num-eval-batch-size-0", ("--eval_batch_size", "0"), "--eval_batch_size 0"),
    ("num-lr-step-0", ("--lr_step", "0"), "--lr_step 0"),
    ("num-lr-negative", ("--lr", "-0.001"), "--lr"),
    ("num-lr-nan", ("--lr", "nan"), "--lr"),
    ("num-lr-visual-mgn-0", ("--lr_visual_mgn", "0"), "--lr_visual_mgn"),
    ("num-lr-gamma-0", ("--lr_gamma", "0"), "--lr_gamma"),
    ("num-seed-negative", ("--seed", "-1"), "--seed -1"),
    ("num-seed-too-big", ("--seed", "4294967296"), "--seed 4294967296"),
    ("num-log-seconds-0", ("--log_seconds", "0"), "--log_seconds"),
    ("num-weight-decay-negative", ("--weight_decay", "-1"), "--weight_decay"),
    ("num-beta1-1", ("--beta1", "1"), "--beta1"),
    ("num-eps-0", ("--eps", "0"), "--eps"),
    ("num-warm-up-too-long", ("--scheduler", "warm_up_cos_anneal", "--epochs", "3", "--warm_up_epoch", "5"),
     "--warm_up_epoch 5"),
    ("num-han-heads-do-not-divide", ("--model", "han", "--hidden_dim", "100", "--nhead", "8"), "--hidden_dim 100"),
    ("num-epochs-not-an-integer", ("--epochs", "1.5"), "--epochs"),
    ("num-pseudo-weight-without-labels", ("--pseudo_weight", "2"), "--pseudo_weight"),
    ("num-dhhn-with-a-han-option", ("--hidden_dim", "256"), "--hidden_dim"),
    ("num-unknown-mode", ("--mode", "bogus"), "--mode"),
]


def number_case(b, case_id, flags, name):
    save = b.fresh(case_id)
    out = b.main(*b.train_flags(save, *flags))
    return refused(out, [name], checks=[(not os.path.exists(save), WEAK, f"made the run folder {b.show(save)}")])


for _id, _flags, _name in NUMBER_CASES:
    case(_id, f"trains with {' '.join(_flags)}", f"exit 2 naming {_name}, before any work (no run folder made)")(
        functools.partial(number_case, case_id=_id, flags=_flags, name=_name))


@case("num-lr-inf", "trains with --lr inf", "exit 2 naming --lr (up front, or as divergence); no checkpoint")
def _(b):
    save = b.fresh("num-lr-inf")
    out = b.main(*b.train_flags(save, "--lr", "inf"))
    saved = [path for path in listing(save) if path.endswith(".pt")]
    return refused(out, ["--lr"], checks=[(not saved, WRONG, f"saved {saved}")])


def device_case(b, case_id, flags, name):
    save = b.made(case_id)
    out = b.main(*b.train_flags(save, *flags))
    left = written_since(save, {})
    return refused(out, [name], checks=[(not left, WEAK, f"wrote {left}")])


for _id, _flags, _name in [("device-not-a-device", ("--device", "gpu0"), "--device gpu0"),
                           ("device-absent-cuda", ("--device", "cuda:7"), "--device cuda:7"),
                           ("device-cuda-graph-on-cpu", ("--cuda_graph",), "--cuda_graph")]:
    case(_id, f"trains with {' '.join(_flags)} on this machine", f"exit 2 naming {_name}; nothing written")(
        functools.partial(device_case, case_id=_id, flags=_flags, name=_name))


# ------------------------------------------------------------------------------------------------
# 2. missing inputs, named by flag

MISSING_CASES = [("missing-audio-dir", "--audio_dir"), ("missing-video-dir", "--video_dir"),
                 ("missing-st-dir", "--st_dir"), ("missing-label-train", "--label_train"),
                 ("missing-label-val", "--label_val"), ("missing-eval-audio", "--eval_audio_csv"),
                 ("missing-eval-visual", "--eval_visual_csv")]


def missing_case(b, case_id, flag):
    save = b.made(case_id)
    out = b.main(*b.train_flags(save, flag, b.path("nowhere", flag.strip("-"))))
    left = written_since(save, {})
    return refused(out, [flag], checks=[(not left, WEAK, f"wrote {left}")])


for _id, _flag in MISSING_CASES:
    case(_id, f"trains with a {_flag} that does not exist", f"exit 2 naming {_flag}; nothing written")(
        functools.partial(missing_case, case_id=_id, flag=_flag))


@case("missing-llp-root", "trains with a mistyped --llp_root", "exit 2 listing every missing input by flag")
def _(b):
    save = b.made("missing-llp-root")
    out = b.main(*b.train_flags(save, root=b.path("no_such_llp")))
    return refused(out, ["--audio_dir", "--st_dir", "--label_train", "--eval_visual_csv"])


@case("missing-label-test-at-test", "tests with a --label_test that does not exist", "exit 2 naming --label_test")
def _(b):
    save = b.fixture("dhhn")
    before = listing(save)
    out = b.main(*b.eval_flags(save, "--label_test", b.path("nowhere", "test.csv")))
    left = written_since(save, before)
    return refused(out, ["--label_test"], checks=[(not left, WEAK, f"wrote {left}")])


@case("missing-eval-2020", "tests with --eval_audio_version 2020 where that copy was never fetched",
      "exit 2 naming the missing 2020 file")
def _(b):
    out = b.main(*b.eval_flags(b.fixture("dhhn"), "--eval_audio_version", "2020"))
    return refused(out, ["AVVP_eval_audio_2020.csv"])


@case("eval-version-and-csv", "tests with both --eval_audio_version 2020 and --eval_audio_csv",
      "exit 2 naming --eval_audio_version")
def _(b):
    out = b.main(*b.eval_flags(b.fixture("dhhn"), "--eval_audio_version", "2020", "--eval_audio_csv",
                               b.data_file(EVAL_FILES["audio"])))
    return refused(out, ["--eval_audio_version"])


@case("missing-refined-labels", "retrains with a --refined_labels file that does not exist",
      "exit 2 naming --refined_labels")
def _(b):
    save = b.made("missing-refined-labels")
    out = b.main(*b.train_flags(save, "--refined_labels", b.path("nowhere", "flags.pkl")), "--mode", "retrain")
    return refused(out, ["--refined_labels"], checks=[(not written_since(save, {}), WEAK, "wrote files")])


@case("retrain-without-refined-labels", "retrains without --refined_labels", "exit 2 naming --refined_labels")
def _(b):
    save = b.made("retrain-without-refined-labels")
    out = b.main(*b.train_flags(save), "--mode", "retrain")
    return refused(out, ["--refined_labels"])


@case("missing-pseudo-dir", "trains with an --audio_pseudo_dir that does not exist", "exit 2 naming --audio_pseudo_dir")
def _(b):
    save = b.made("missing-pseudo-dir")
    out = b.main(*b.train_flags(save, "--audio_pseudo_dir", b.path("nowhere", "CLAP")))
    return refused(out, ["--audio_pseudo_dir"])


@case("missing-checkpoint-name", "tests --checkpoint NOPE, a name never trained", "exit 2 naming NOPE; nothing written")
def _(b):
    save = b.fixture("dhhn")
    before = listing(save)
    out = b.main(*b.eval_flags(save, "--checkpoint", "NOPE"))
    left = written_since(save, before)
    return refused(out, ["NOPE"], checks=[(not left, WEAK, f"wrote {left}")])


@case("test-mistyped-save-dir", "tests with a mistyped --model_save_dir (a folder that does not exist)",
      "exit 2 naming the folder or the missing checkpoint; the mistyped folder is not created")
def _(b):
    save = b.fresh("typo", "modles")
    out = b.main(*b.eval_flags(save))
    return refused(out, ["DHHN"], checks=[
        (not os.path.exists(save), WEAK, f"created the mistyped folder {b.show(save)} ({sorted(listing(save))})")])


@case("resume-without-last", "trains with --resume in a folder without a run", "exit 2 naming DHHN_last.pt")
def _(b):
    save = b.made("resume-without-last")
    out = b.main(*b.train_flags(save, "--resume"))
    return refused(out, ["DHHN_last.pt"])


# ------------------------------------------------------------------------------------------------
# 3. paths that cannot be what they name

@case("save-dir-is-a-file", "trains with a --model_save_dir that is a file", "exit 2 naming --model_save_dir")
def _(b):
    path = b.fresh("save-dir-is-a-file")
    clobber(path, b"notes")
    return refused(b.main(*b.train_flags(path)), ["--model_save_dir"])


@case("save-dir-under-a-file", "trains with a --model_save_dir under a file", "exit 2 naming that path")
def _(b):
    path = b.fresh("save-dir-under-a-file")
    clobber(path, b"notes")
    return refused(b.main(*b.train_flags(os.path.join(path, "models"))), [os.path.join(path, "models")])


@case("checkpoint-empty", "trains with --checkpoint ''", "exit 2 naming --checkpoint")
def _(b):
    save = b.fresh("checkpoint-empty")
    out = b.main(*b.train_flags(save, "--checkpoint", ""))
    return refused(out, ["--checkpoint"], checks=[(not os.path.exists(save), WEAK, "made the run folder")])


@case("checkpoint-with-a-folder", "trains with --checkpoint runs/DHHN (a folder in the name)",
      "exit 2 naming --checkpoint")
def _(b):
    save = b.fresh("checkpoint-with-a-folder")
    return refused(b.main(*b.train_flags(save, "--checkpoint", "runs/DHHN")), ["--checkpoint"])


@case("pseudo-dir-is-a-file", "trains with an --audio_pseudo_dir that is a file", "exit 2 naming --audio_pseudo_dir")
def _(b):
    path = b.fresh("pseudo-dir-is-a-file.npy")
    clobber(path, npy_bytes(np.zeros((10, 25))))
    save = b.made("pseudo-dir-is-a-file")
    return refused(b.main(*b.train_flags(save, "--audio_pseudo_dir", path)), ["--audio_pseudo_dir"])


@case("export-dir-is-a-file", "tests with an --export_dir that is a file", "exit 2 naming --export_dir")
def _(b):
    path = b.fresh("export-dir-is-a-file")
    clobber(path, b"notes")
    return refused(b.main(*b.eval_flags(b.fixture("dhhn"), "--export_dir", path)), ["--export_dir"])


@case("export-dir-left-behind", "tests a checkpoint name that does not exist, with --export_dir E",
      "exit 2 naming the checkpoint; E not created")
def _(b):
    export = b.fresh("export-dir-left-behind")
    out = b.main(*b.eval_flags(b.fixture("dhhn"), "--checkpoint", "NOPE", "--export_dir", export))
    return refused(out, ["NOPE"], checks=[(not os.path.exists(export), WEAK,
                                           f"created the --export_dir {b.show(export)} of a refused run")])


def frozen_clone(b, case_id):
    save = clone(b.fixture("dhhn"), b.fresh(case_id))
    return save, b.freeze(save)


@case("read-only-save-dir-train", "trains into a read-only --model_save_dir", "exit 2 naming the folder")
def _(b):
    save = b.made("read-only-save-dir-train")
    how = b.freeze(save)
    out = b.main(*b.train_flags(save))
    verdict = refused(out, [save])
    return verdict[0], f"(read-only simulated by {how}) {verdict[1]}"


@case("read-only-save-dir-test", "tests a run in a read-only folder (its summary cannot be written)",
      "exit 2 naming the folder")
def _(b):
    save, how = frozen_clone(b, "read-only-save-dir-test")
    verdict = refused(b.main(*b.eval_flags(save)), [save])
    return verdict[0], f"(read-only simulated by {how}) {verdict[1]}"


@case("read-only-save-dir-test-no-log", "tests a run in a read-only folder with --no-log",
      "exit 0: scored without a lock, saying so")
def _(b):
    save, how = frozen_clone(b, "read-only-save-dir-test-no-log")
    out = b.main(*b.eval_flags(save, "--no-log"))
    verdict = succeeded(out, [has(out, "read-only", WEAK, "no word that the folder is read-only"),
                              has(out, "test: DHHN dual", WRONG, "no test table")])
    return verdict[0], f"(read-only simulated by {how}) {verdict[1]}"


# ------------------------------------------------------------------------------------------------
# 4. checkpoints: corrupt, foreign, of another model or other feature sizes

def damaged_checkpoint_case(b, case_id, role, damage):
    save = clone(b.fixture("dhhn"), b.fresh(case_id))
    path = os.path.join(save, f"DHHN_best_{role}.pt")
    with open(path, "rb") as handle:
        data = handle.read()
    clobber(path, damage(data))
    return refused(b.main(*b.eval_flags(save)), [path])


for _id, _role, _what, _damage in [
        ("ckpt-garbage", "overall", "replaced by bytes that are no checkpoint", lambda data: b"not a checkpoint" * 64),
        ("ckpt-truncated", "visual", "cut to half its size (a copy that stopped)", lambda data: data[:len(data) // 2]),
        ("ckpt-empty", "audio", "emptied (0 bytes)", lambda data: b"")]:
    case(_id, f"tests a run whose DHHN_best_{_role}.pt was {_what}", "exit 2 naming the file")(
        functools.partial(damaged_checkpoint_case, case_id=_id, role=_role, damage=_damage))


@case("ckpt-malicious-pickle", "tests a run whose DHHN_best_audio.pt is a pickle that runs a command",
      "exit 2 naming the file; the command never runs")
def _(b):
    save = clone(b.fixture("dhhn"), b.fresh("ckpt-malicious-pickle"))
    marker = b.path("cases", "ckpt-malicious-pickle.ran")
    path = os.path.join(save, "DHHN_best_audio.pt")
    clobber(path, pickle.dumps(RunsCode(marker), protocol=2))
    out = b.main(*b.eval_flags(save))
    return refused(out, [path], checks=[(not os.path.exists(marker), WRONG, "the pickled command RAN")])


@case("ckpt-missing-key", "tests a run whose DHHN_best_audio.pt lacks one weight",
      "exit 2 naming the file")
def _(b):
    from utils import checkpoint
    save = clone(b.fixture("dhhn"), b.fresh("ckpt-missing-key"))
    path = os.path.join(save, "DHHN_best_audio.pt")
    content = checkpoint.load(path)
    content["model"].pop(next(iter(content["model"])))
    checkpoint.save(path, **content)
    return refused(b.main(*b.eval_flags(save)), [path])


@case("ckpt-other-model", "tests DHHN checkpoints with --model han", "exit 2 saying they hold a dhhn model")
def _(b):
    return refused(b.main(*b.eval_flags(b.fixture("dhhn"), "--model", "han")), ["dhhn"])


@case("ckpt-han-run-as-dhhn", "tests a HAN run without --model han", "exit 2 naming the missing DHHN file")
def _(b):
    return refused(b.main(*b.eval_flags(b.fixture("han"))), ["DHHN_best_audio.pt"])


@case("ckpt-other-feature-sizes", "tests the run on features of another size (64-dim audio)",
      "exit 2 naming the checkpoint and the sizes")
def _(b):
    out = b.main(*b.eval_flags(b.fixture("dhhn"), root=b.fixture("llp64")))
    return refused(out, ["DHHN_best_", "feature sizes"])


@case("ckpt-last-garbage-resume", "resumes a run whose DHHN_last.pt is corrupt", "exit 2 naming DHHN_last.pt")
def _(b):
    save = clone(b.fixture("dhhn"), b.fresh("ckpt-last-garbage-resume"))
    path = os.path.join(save, "DHHN_last.pt")
    clobber(path, b"\x00" * 4096)
    before = listing(save)
    out = b.main(*b.train_flags(save, "--resume"))
    left = written_since(save, before)
    return refused(out, [path], checks=[(not left, WEAK, f"wrote {left}")])


@case("ckpt-release-garbage", "runs VALOR's test script on a models/model_VALOR/checkpoint_best.pt that is garbage",
      "exit 2 naming the file")
def _(b):
    root = valor_layout(b, "cases/ckpt-release-garbage")
    path = os.path.join(root, "models", "model_VALOR", "checkpoint_best.pt")
    os.makedirs(os.path.dirname(path))
    clobber(path, b"<html>404</html>")
    return refused(b.main(*VALOR_TEST_WORDS, "--device", "cpu", "--progress", "off", cwd=root), ["checkpoint_best.pt"])


# ------------------------------------------------------------------------------------------------
# 5. annotation rows of each kind

def replace_field(line_number, column, value):
    def change(lines):
        fields = lines[line_number - 1].split("\t")
        fields[column] = value(fields[column])
        lines[line_number - 1] = "\t".join(fields)
        return lines
    return change


ANNOTATION_CASES = [
    ("ann-unknown-class", "train", "a class that does not exist on line 2",
     replace_field(2, 1, lambda text: "Speech,Not_a_class"), ["line 2", "Not_a_class"]),
    ("ann-filename-trailing-space", "train", "a trailing space after the filename on line 3",
     replace_field(3, 0, lambda text: text + " "), ["line 3"]),
    ("ann-class-leading-space", "val", "a space before the class on line 2",
     replace_field(2, 1, lambda text: " " + text), ["line 2"]),
    ("ann-duplicate-filename", "train", "line 2 repeated at the end",
     lambda lines: lines + [lines[1]], ["already on line 2"]),
    ("ann-malformed-row", "val", "an extra field on line 3",
     lambda lines: lines[:2] + [lines[2] + "\textra"] + lines[3:], ["line 3"]),
    ("ann-header-only", "train", "its header and no video rows", lambda lines: lines[:1], ["no videos"]),
    ("ann-comma-separated", "train", "commas instead of tabs (saved from a spreadsheet)",
     lambda lines: [line.replace("\t", ",") for line in lines], []),
    ("ann-eval-onset-not-an-integer", "audio", "onset 'x' on line 2", replace_field(2, 1, lambda text: "x"),
     ["line 2"]),
    ("ann-eval-offset-out-of-range", "visual", "offset 11 on line 2", replace_field(2, 2, lambda text: "11"),
     ["line 2"]),
    ("ann-eval-unknown-class", "audio", "an unknown class on line 3", replace_field(3, 3, lambda text: "Bogus"),
     ["line 3"]),
    ("ann-eval-filename-space", "visual", "a trailing space after the filename on line 2",
     replace_field(2, 0, lambda text: text + " "), ["line 2"]),
]


def annotation_file(b, root, which):
    return b.data_file(SPLIT_FILES[which] if which in SPLIT_FILES else EVAL_FILES[which], root)


def annotation_case(b, case_id, which, change):
    root = b.variant(case_id)
    path = annotation_file(b, root, which)
    edit_lines(path, change)
    save = b.made(case_id)
    return path, save, b.main(*b.train_flags(save, root=root))


def annotation_row_case(b, case_id, which, change, names):
    path, save, out = annotation_case(b, case_id, which, change)
    left = written_since(save, {})
    return refused(out, [path, *names], checks=[(not left, WEAK, f"wrote {left}")])


for _id, _which, _what, _change, _names in ANNOTATION_CASES:
    case(_id, f"trains with {_which}'s annotation file holding {_what}",
         "exit 2 naming the file and the line")(
        functools.partial(annotation_row_case, case_id=_id, which=_which, change=_change, names=_names))


@case("ann-empty-file", "trains with an empty (0-byte) val label file", "exit 2 naming the file")
def _(b):
    root = b.variant("ann-empty-file")
    path = annotation_file(b, root, "val")
    clobber(path, b"")
    return refused(b.main(*b.train_flags(b.made("ann-empty-file"), root=root)), [path])


@case("ann-not-utf8", "trains with a val label file holding a byte that is not UTF-8", "exit 2 naming the file")
def _(b):
    root = b.variant("ann-not-utf8")
    path = annotation_file(b, root, "val")
    with open(path, "rb") as handle:
        data = handle.read()
    clobber(path, data.replace(b"Speech", b"Sp\xe9ech", 1))
    return refused(b.main(*b.train_flags(b.made("ann-not-utf8"), root=root)), [path])


@case("ann-val-names-mismatch", "trains with val filenames that match no eval row (other start/end times)",
      "exit 2 naming the label file: its videos have no segment truth")
def _(b):
    def rename(lines):
        return lines[:1] + [f"{line[:YOUTUBE_ID_LENGTH]}_1_11\t{line.split(chr(9))[1]}" for line in lines[1:] if line]
    path, save, out = annotation_case(b, "ann-val-names-mismatch", "val", rename)
    return refused(out, [path])


def eval_warning_case(b, case_id, which, change, warning):
    root = b.variant(case_id)
    for kind in which:
        edit_lines(annotation_file(b, root, kind), change)
    save = clone(b.fixture("dhhn"), b.fresh(case_id))
    out = b.main(*b.eval_flags(save, root=root))
    return succeeded(out, [has(out, warning, WRONG, f"no warning {warning!r}: the defect went unnoticed"),
                           has(out, "test: DHHN dual", WRONG, "no test table")])


@case("ann-eval-offset-before-onset", "tests with an eval row whose offset is before its onset (as in the real files)",
      "exit 0 with a warning naming the row (kept as published)")
def _(b):
    return eval_warning_case(b, "ann-eval-offset-before-onset", ["audio"],
                             replace_field(2, 1, lambda text: "9"), "offset <= onset")


@case("ann-eval-rows-of-no-video", "tests with eval rows naming a video in no split (as in the real files)",
      "exit 0 with a warning that counts them")
def _(b):
    return eval_warning_case(b, "ann-eval-rows-of-no-video", ["audio"],
                             lambda lines: lines + ["zzzzzzzzzzz_0_10\t0\t10\tSpeech"], "match no known video")


@case("ann-test-video-without-truth", "tests with one test video that has no eval row at all",
      "exit 0 with a warning naming the video (scored against empty truth)")
def _(b):
    name = b.names("test")[0]
    return eval_warning_case(b, "ann-test-video-without-truth", ["audio", "visual"],
                             lambda lines: [line for line in lines if not line.startswith(name)], name)


def refined_labels_case(b, case_id, content, suffix, names, marker=None):
    path = b.fresh(case_id + suffix)
    clobber(path, content)
    save = b.made(case_id)
    out = b.main(*b.train_flags(save, "--refined_labels", path), "--mode", "retrain")
    checks = [(not written_since(save, {}), WEAK, "wrote files")]
    if marker:
        checks.append((not os.path.exists(marker), WRONG, "the pickled command RAN"))
    return refused(out, [path, *names], checks=checks)


@case("ann-refined-garbage", "retrains on a --refined_labels .pkl that is garbage", "exit 2 naming the file")
def _(b):
    return refined_labels_case(b, "ann-refined-garbage", b"\x80\x04not a pickle at all", ".pkl", [])


@case("ann-refined-malicious", "retrains on a --refined_labels pickle that runs a command",
      "exit 2 naming the file; the command never runs")
def _(b):
    marker = b.path("cases", "ann-refined-malicious.ran")
    return refined_labels_case(b, "ann-refined-malicious", pickle.dumps(RunsCode(marker), protocol=2), ".pkl", [],
                               marker)


@case("ann-refined-other-video", "retrains on a flags .csv naming a val video", "exit 2 naming the file and line 2")
def _(b):
    text = f"filename\tevent_labels\tmodality\n{b.names('val')[0]}\tSpeech\taudio\n"
    return refined_labels_case(b, "ann-refined-other-video", text.encode(), ".csv", ["line 2"])


@case("ann-refined-index-outside", "retrains on a published-format pickle whose index is past the training videos",
      "exit 2 naming the file")
def _(b):
    payload = [[[999]] + [[] for _ in range(24)], [[] for _ in range(25)]]
    return refined_labels_case(b, "ann-refined-index-outside", pickle.dumps(payload), ".pkl", ["outside"])


# ------------------------------------------------------------------------------------------------
# 6. feature files of each kind of damage

def feature_case(b, case_id, folder, split, damage, mode="train", index=0):
    root = b.variant(case_id, copy=(folder,))
    path = b.feature(root, folder, b.names(split)[index])
    damage(path)
    if mode == "train":
        out = b.main(*b.train_flags(b.made(case_id), root=root))
    else:
        out = b.main(*b.eval_flags(clone(b.fixture("dhhn"), b.fresh(case_id)), root=root))
    return refused(out, [path])


def write_array(array, allow_pickle=False):
    return lambda path: clobber(path, npy_bytes(array, allow_pickle))


def keep_bytes(count):
    def damage(path):
        with open(path, "rb") as handle:
            data = handle.read()
        clobber(path, data[:count])
    return damage


FEATURE_CASES = [
    ("feat-missing", "vggish", "train", "a train audio feature file deleted", os.remove),
    ("feat-garbage", "res152", "val", "a val frame feature file that is not .npy",
     lambda path: clobber(path, b"garbage" * 100)),
    ("feat-empty", "r2plus1d_18", "train", "a 0-byte snippet feature file", lambda path: clobber(path, b"")),
    ("feat-truncated", "vggish", "val", "a val audio file cut after its header", keep_bytes(1000)),
    ("feat-wrong-dim", "vggish", "train", "an audio file of shape (10, 64)",
     write_array(np.zeros((10, 64), np.float32))),
    ("feat-wrong-rows", "r2plus1d_18", "train", "a snippet file of shape (9, 512)",
     write_array(np.zeros((9, 512), np.float32))),
    ("feat-three-dims", "vggish", "val", "an audio file of shape (10, 128, 1)",
     write_array(np.zeros((10, 128, 1), np.float32))),
    ("feat-int-dtype", "r2plus1d_18", "val", "a snippet file of int32", write_array(np.zeros((10, 512), np.int32))),
    ("feat-object-dtype", "vggish", "train", "an audio file holding a pickled object array",
     write_array(np.array([{"a": 1}] * 10, dtype=object), allow_pickle=True)),
    ("feat-nan", "res152", "val", "a val frame file with NaN values",
     write_array(np.full((80, 2048), np.nan, np.float32))),
    ("feat-float64-overflow", "vggish", "train", "a float64 audio file of 1e300 (Inf as float32)",
     write_array(np.full((10, 128), 1e300))),
]

for _id, _folder, _split, _what, _damage in FEATURE_CASES:
    case(_id, f"trains with {_what}", "exit 2 naming the file; nothing trained")(
        functools.partial(feature_case, case_id=_id, folder=_folder, split=_split, damage=_damage))


@case("feat-inf-test", "tests with a test audio file holding Inf", "exit 2 naming the file")
def _(b):
    return feature_case(b, "feat-inf-test", "vggish", "test", write_array(np.full((10, 128), np.inf, np.float32)),
                        mode="test")


@case("feat-float64-ok", "tests on audio features saved as float64 (same values)",
      "exit 0 with the numbers of the float32 files")
def _(b):
    root = b.variant("feat-float64-ok", copy=("vggish",))
    for name in b.names("test"):
        path = b.feature(root, "vggish", name)
        np.save(path, np.load(path).astype(np.float64))
    expected = test_tables(b)
    save = clone(b.fixture("dhhn"), b.fresh("feat-float64-ok"))
    out = b.main(*b.eval_flags(save, root=root))
    tables = None
    if out.returncode == 0:
        with open(os.path.join(save, "DHHN_test_summary.json")) as handle:
            tables = json.load(handle)["tables"]
    return succeeded(out, [(tables == expected, WRONG, "other numbers than the float32 features give")])


@case("feat-missing-train-and-inf-val", "trains with a train audio file missing and a val snippet file of Inf",
      "exit 2 naming both files in one error")
def _(b):
    root = b.variant("feat-missing-train-and-inf-val", copy=("vggish", "r2plus1d_18"))
    missing = b.feature(root, "vggish", b.names("train")[0])
    broken = b.feature(root, "r2plus1d_18", b.names("val")[0])
    os.remove(missing)
    np.save(broken, np.full((10, 512), np.inf, np.float32))
    out = b.main(*b.train_flags(b.made("feat-missing-train-and-inf-val"), root=root))
    return refused(out, [missing, broken])


@case("feat-many-missing", "trains with 25 train audio files deleted", "exit 2 counting all 25")
def _(b):
    root = b.variant("feat-many-missing", copy=("vggish",))
    for name in b.names("train")[:25]:
        os.remove(b.feature(root, "vggish", name))
    return refused(b.main(*b.train_flags(b.made("feat-many-missing"), root=root)), ["25 bad feature file"])


@case("feat-random-weights", "trains on audio features whose extraction record says random weights",
      "exit 2 naming the folder")
def _(b):
    from extraction import records
    root = b.variant("feat-random-weights", copy=("vggish",))
    folder = os.path.join(root, "feats", "vggish")
    records.claim_folder(folder, {"kind": "audio", "network": "VGGish", "weights": "random", "random_weights": True,
                                  "settings": {}})
    return refused(b.main(*b.train_flags(b.made("feat-random-weights"), root=root)), [folder])


def stale_feature_case(b, case_id, new_inode):
    """The packed cache was built; then a test file is replaced by one of the same size and mtime."""
    root = b.variant(case_id, copy=("vggish",))
    save = clone(b.fixture("dhhn"), b.fresh(case_id))
    b.setup([PYTHON, MAIN, *b.eval_flags(save, root=root)], "building the packed cache")
    path = b.feature(root, "vggish", b.names("test")[0])
    stat = os.stat(path)
    data = npy_bytes(np.full((10, 128), np.nan, np.float32))
    if len(data) != stat.st_size:
        raise RuntimeError("the NaN file does not have the size of the original")
    if new_inode:   # rsync -a / tar: a new file renamed into place, then the old mtime
        clobber(path + ".new", data)
        os.replace(path + ".new", path)
    else:           # cp -p: written into the same inode, then the old mtime
        with open(path, "r+b") as handle:
            handle.write(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return refused(b.main(*b.eval_flags(save, root=root)), [path],
                   if_passed="the stale cached features were scored")


case("feat-stale-same-inode", "replaces a cached test feature file as cp -p does (same size, inode and mtime)",
     "exit 2 naming the NaN file: the cache is not trusted")(
    functools.partial(stale_feature_case, case_id="feat-stale-same-inode", new_inode=False))
case("feat-stale-new-inode", "replaces a cached test feature file as rsync -a does (same size and mtime)",
     "exit 2 naming the NaN file: the cache is not trusted")(
    functools.partial(stale_feature_case, case_id="feat-stale-new-inode", new_inode=True))


def pseudo_case(b, case_id, damage):
    folder = b.made(case_id + "-labels")
    for name in b.names("train"):
        np.save(os.path.join(folder, name[:YOUTUBE_ID_LENGTH] + ".npy"), np.zeros((10, 25), np.int64))
    path = os.path.join(folder, b.names("train")[0][:YOUTUBE_ID_LENGTH] + ".npy")
    damage(path)
    out = b.main(*b.train_flags(b.made(case_id), "--audio_pseudo_dir", folder))
    return refused(out, [path])


case("pseudo-bad-values", "trains with a segment pseudo-label file holding 0.5", "exit 2 naming the file")(
    functools.partial(pseudo_case, case_id="pseudo-bad-values",
                      damage=lambda path: np.save(path, np.full((10, 25), 0.5))))
case("pseudo-missing-file", "trains with a segment pseudo-label file missing", "exit 2 naming the file")(
    functools.partial(pseudo_case, case_id="pseudo-missing-file", damage=os.remove))


# ------------------------------------------------------------------------------------------------
# 7. resume

def changed_resume_case(b, case_id, flags, names, source="dhhn", root=None):
    save = clone(b.fixture(source), b.fresh(case_id))
    before = listing(save)
    out = b.main(*b.train_flags(save, "--resume", *flags, root=root))
    left = written_since(save, before)
    return refused(out, names, checks=[(not left, WEAK, f"wrote {left}")])


for _id, _flags, _names in [
        ("resume-changed-lr", ("--lr", "0.001"), ["lr 0.0003 -> 0.001"]),
        ("resume-changed-batch-size", ("--batch-size", "8"), ["batch_size 16 -> 8"]),
        ("resume-changed-switch", ("--no_rmse",), ["rmse"]),
        ("resume-changed-seed", ("--seed", "2"), ["seed"]),
        ("resume-other-model", ("--model", "han"), ["--resume"])]:
    case(_id, f"resumes the 1-epoch run with {' '.join(_flags)}", "exit 2 naming the change; nothing written")(
        functools.partial(changed_resume_case, case_id=_id, flags=_flags, names=_names))


@case("resume-changed-data", "resumes the run on another copy of the data (--llp_root elsewhere)",
      "exit 2 naming llp_root; nothing written")
def _(b):
    return changed_resume_case(b, "resume-changed-data", (), ["llp_root"], root=b.variant("resume-changed-data"))


@case("resume-fewer-epochs", "resumes a run planned for 3 epochs with --epochs 2", "exit 2: only more epochs")
def _(b):
    return changed_resume_case(b, "resume-fewer-epochs", ("--epochs", "2"), ["epochs 3 -> 2"], source="killed")


def logged_epochs(save):
    try:
        with open(os.path.join(save, "DHHN_train_log.jsonl")) as handle:
            return [json.loads(line)["epoch"] for line in handle if line.strip()]
    except OSError:
        return None


@case("resume-more-epochs", "resumes the finished 1-epoch run with --epochs 2", "exit 0; the log holds epochs 1, 2")
def _(b):
    save = clone(b.fixture("dhhn"), b.fresh("resume-more-epochs"))
    out = b.main(*b.train_flags(save, "--resume", "--epochs", "2"))
    epochs = logged_epochs(save)
    return succeeded(out, [(epochs == [1, 2], WRONG, f"the log holds epochs {epochs}")])


@case("resume-moved-folder", "moves a run killed with kill -9 after epoch 1 (of 3) to another folder and resumes it",
      "exit 0; the log holds epochs 1, 2, 3")
def _(b):
    save = clone(b.fixture("killed"), b.fresh("moved", "elsewhere"))
    out = b.main(*b.train_flags(save, "--resume", "--epochs", "3"))
    epochs = logged_epochs(save)
    return succeeded(out, [(epochs == [1, 2, 3], WRONG, f"the log holds epochs {epochs}")])


# ------------------------------------------------------------------------------------------------
# 8. one run per name, interrupts, killed runs

@case("lock-second-run", "tests under a name whose training is still running", "exit 2 naming the process")
def _(b):
    save = b.fresh("lock-second-run")
    background = b.start([PYTHON, MAIN, *b.train_flags(save, "--epochs", "50")])
    try:
        if not b.wait_for(lambda: os.path.exists(os.path.join(save, "DHHN_train_log.jsonl")), background):
            raise SetupFailed(f"the running training never finished epoch 1: {short(b.finish(background).stderr)}")
        before = listing(save)
        out = b.main(*b.eval_flags(save))
        # the training goes on writing its own files meanwhile: only the refused test's would be wrong
        left = [path for path in written_since(save, before) if path.startswith("DHHN_test")]
    finally:
        b.signal(background, signal.SIGTERM)
        b.finish(background, timeout=120)
    return refused(out, ["in use by a train run", f"process {background.process.pid}"],
                   checks=[(not left, WEAK, f"wrote {left}")])


def interrupted_checks(b, save, out):
    from utils import checkpoint
    last = os.path.join(save, "DHHN_last.pt")
    match = re.search(r"interrupted after epoch (\d+)", out.stderr)
    epoch = checkpoint.load(last, mmap=True)["epoch"] if os.path.exists(last) else None
    logged = logged_epochs(save)
    temps = [path for path in listing(save) if path.endswith(".tmp")]
    said = int(match.group(1)) if match else None
    return [(said is not None and said == epoch, WRONG, f"says epoch {said}, _last.pt holds {epoch}"),
            (logged == list(range(1, (epoch or 0) + 1)), WRONG, f"log epochs {logged} vs _last.pt epoch {epoch}"),
            (not temps, WEAK, f"left temp files {temps}")]


@case("sigterm-train", "sends SIGTERM (what kill and schedulers send) to a training after epoch 1",
      "exit 130: 'interrupted after epoch N ... --resume', _last.pt holds N, no temp file")
def _(b):
    save, out = b.fixture("sigtermed")
    b.commands.append("(fixture sigtermed) " + b.describe(out.argv, None, None, None) + "; kill -TERM <pid>")
    return refused(out, ["interrupted after epoch", "--resume"], code=130, checks=interrupted_checks(b, save, out))


@case("sigterm-then-resume", "resumes the SIGTERM-stopped run", "exit 0; the log holds epochs 1-4")
def _(b):
    source, _ = b.fixture("sigtermed")
    save = clone(source, b.fresh("sigterm-then-resume"))
    out = b.main(*b.train_flags(save, "--epochs", "4", "--resume"))
    epochs = logged_epochs(save)
    return succeeded(out, [(epochs == [1, 2, 3, 4], WRONG, f"the log holds epochs {epochs}")])


@case("ctrl-c-train", "presses Ctrl-C (SIGINT to the process group) during a training after epoch 1",
      "exit 130: 'interrupted after epoch N ... --resume'")
def _(b):
    save = b.fresh("ctrl-c-train")
    started = b.start([PYTHON, MAIN, *b.train_flags(save, "--epochs", "4")])
    if not b.wait_for(lambda: os.path.exists(os.path.join(save, "DHHN_train_log.jsonl")), started):
        b.signal(started, signal.SIGKILL)
        raise SetupFailed(f"never finished epoch 1: {short(b.finish(started).stderr)}")
    b.signal(started, signal.SIGINT)
    out = b.finish(started)
    return refused(out, ["interrupted after epoch", "--resume"], code=130, checks=interrupted_checks(b, save, out))


@case("sigterm-before-epoch-1", "sends SIGTERM to a training right after its data is loaded",
      "exit 130 saying no epoch was saved; no checkpoint")
def _(b):
    save = b.fresh("sigterm-before-epoch-1")
    started = b.start([PYTHON, MAIN, *b.train_flags(save, "--epochs", "3")])

    def loaded():
        with open(started.stdout_path) as handle:
            return "val: 16 videos loaded" in handle.read()
    if not b.wait_for(loaded, started):
        b.signal(started, signal.SIGKILL)
        raise SetupFailed(f"never loaded its data: {short(b.finish(started).stderr)}")
    b.signal(started, signal.SIGTERM)
    out = b.finish(started)
    saved = sorted(path for path in listing(save) if path.endswith(".pt") or path.endswith(".tmp"))
    if "interrupted after epoch" in out.stderr:   # the signal arrived after epoch 1 after all: judge it as such
        return refused(out, ["--resume"], code=130, checks=interrupted_checks(b, save, out))
    return refused(out, [], code=130, checks=[(not saved, WEAK, f"left {saved}")])


@case("kill9-then-test", "tests a run killed with kill -9 after epoch 1 of 3",
      "exit 0; the run's lock is free and every table says UNFINISHED RUN")
def _(b):
    save = clone(b.fixture("killed"), b.fresh("kill9-then-test"))
    out = b.main(*b.eval_flags(save))
    return succeeded(out, [has(out, "[UNFINISHED RUN: trained 1 of 3 epochs]", WRONG,
                               "no '[UNFINISHED RUN' in the table titles: scored as a finished run")])


@case("stale-tmp-removed", "tests a run folder holding temp files of killed writes (its own and another run's)",
      "exit 0; its own .DHHN_*.tmp removed and said, the other run's kept")
def _(b):
    save = clone(b.fixture("dhhn"), b.fresh("stale-tmp-removed"))
    own = [".DHHN_last.pt.k1ll3d_x.tmp", ".DHHN_best_audio.pt.abc123.tmp"]
    other = [".DHHN_seed2_last.pt.abc123.tmp"]
    for name in own + other:
        clobber(os.path.join(save, name), b"partial")
    out = b.main(*b.eval_flags(save))
    return succeeded(out, [has(out, "removed 2 temp file(s)", WEAK, "no word of the removed temp files"),
                           (not any(os.path.exists(os.path.join(save, name)) for name in own), WEAK,
                            "its own temp files are still there"),
                           (all(os.path.exists(os.path.join(save, name)) for name in other), WRONG,
                            "removed another run's temp file")])


@case("train-again-used-name", "trains again under the name of a finished run",
      "exit 0; the earlier files moved to previous/, the move printed")
def _(b):
    save = clone(b.fixture("dhhn"), b.fresh("train-again-used-name"))
    out = b.main(*b.train_flags(save))
    previous = os.path.join(save, "previous")
    moved = [entry for entry in os.listdir(previous)] if os.path.isdir(previous) else []
    kept = sorted(os.listdir(os.path.join(previous, moved[0]))) if moved else []
    return succeeded(out, [has(out, "moved to", WEAK, "no word of the move"),
                           ("DHHN_last.pt" in kept and "DHHN_best_audio.pt" in kept, WRONG,
                            f"the earlier run's files were not kept (previous/: {moved} {kept})")])


# ------------------------------------------------------------------------------------------------
# 9. failed writes, divergence, non-finite models

@case("full-disk-first-checkpoint", "trains when the first checkpoint cannot be written (EFBIG past ~1 MB)",
      "exit 2: one line naming the file and the cause; no temp file; no checkpoint")
def _(b):
    save = b.fresh("full-disk-first-checkpoint")
    out = b.main(*b.train_flags(save, "--epochs", "2", "--feature_cache", "none"), file_blocks=FILE_LIMIT_FIRST_WRITE)
    files = listing(save)
    temps = [path for path in files if path.endswith(".tmp")]
    verdict = refused(out, ["cannot write", "DHHN_best_", "no epoch of this run was saved"],
                      checks=[(not temps, WEAK, f"left temp files {temps}")])
    return verdict[0], f"(full disk simulated by ulimit -f {FILE_LIMIT_FIRST_WRITE}) {verdict[1]}"


@fixture
def full_disk_last(b):
    """(folder, outcome) of a 2-epoch training whose first _last.pt write fails (EFBIG past ~51 MB)."""
    save = b.path("runs", "full_disk_last")
    out = b.main(*b.train_flags(save, "--epochs", "2", "--feature_cache", "none"), file_blocks=FILE_LIMIT_LAST_WRITE)
    return save, out


@case("full-disk-last-checkpoint", "trains when the epoch's _last.pt cannot be written (EFBIG past ~51 MB)",
      "exit 2: one line naming DHHN_last.pt; no temp file")
def _(b):
    save, out = b.fixture("full_disk_last")
    b.commands.append(f"ulimit -f {FILE_LIMIT_LAST_WRITE}; " + b.describe(out.argv, None, None, None))
    temps = [path for path in listing(save) if path.endswith(".tmp")]
    verdict = refused(out, ["cannot write", "DHHN_last.pt"], checks=[(not temps, WEAK, f"left temp files {temps}")])
    return verdict[0], f"(full disk simulated by ulimit -f {FILE_LIMIT_LAST_WRITE}) {verdict[1]}"


@case("full-disk-then-test", "tests the run whose _last.pt write failed in epoch 1 of 2 (its best files landed)",
      "refused, or exit 0 with UNFINISHED RUN in every title")
def _(b):
    source, _ = b.fixture("full_disk_last")
    save = clone(source, b.fresh("full-disk-then-test"))
    out = b.main(*b.eval_flags(save))
    if out.returncode != 0:
        return refused(out, [])
    return succeeded(out, [has(out, "UNFINISHED RUN", WRONG, "no word that the run stopped in epoch 1 of 2: "
                                                             "its epoch-1 best files are scored as a finished run")])


@case("diverge-lr-1e6", "trains with --lr 1e6", "exit 2 naming the epoch and step; no _last.pt")
def _(b):
    save = b.fresh("diverge-lr-1e6")
    out = b.main(*b.train_flags(save, "--epochs", "2", "--lr", "1e6"))
    saved = [path for path in listing(save) if path.endswith(".pt")]
    return refused(out, ["epoch 1, step", "diverged"], checks=[(not saved, WRONG, f"saved {saved}")])


@case("diverge-lr-1e38-one-step", "trains one step with --lr 1e38 (the loss is computed before the update)",
      "exit 2 naming the epoch and step; no checkpoint full of inf")
def _(b):
    save = b.fresh("diverge-lr-1e38-one-step")
    out = b.main(*b.train_flags(save, "--lr", "1e38", "--batch-size", "64"))
    saved = [path for path in listing(save) if path.endswith(".pt")]
    return refused(out, ["epoch 1, step 1/1", "diverged"], checks=[(not saved, WRONG, f"saved {saved}")],
                   if_passed="checkpoints of broken weights were saved")


def nan_case(b, mode, extra=(), export=None):
    save = b.fixture("nan_run")
    before = listing(save)
    out = b.main(*b.eval_flags(save, *extra, mode=mode))
    left = written_since(save, before)
    checks = [(not left, WEAK, f"wrote {left}")]
    if export:
        checks.append((not os.path.exists(export), WEAK, f"created the --export_dir {b.show(export)} "
                                                         f"({sorted(listing(export))})"))
    return refused(out, ["inf or NaN"], checks=checks, if_passed="a table of a model that predicts nothing")


case("nan-model-test", "tests a run whose weights are NaN", "exit 2 naming the videos; no summary")(
    functools.partial(nan_case, mode="test"))
case("nan-model-val", "scores a run whose weights are NaN on val", "exit 2; no summary")(
    functools.partial(nan_case, mode="val"))


@case("nan-model-export", "tests a NaN-weight run with --export_dir E", "exit 2; nothing written, E not created")
def _(b):
    export = b.fresh("nan-model-export")
    return nan_case(b, "test", ("--export_dir", export), export)


@case("nan-model-estimate-labels", "estimates refinement flags with a NaN-weight run", "exit 2; no flags file")
def _(b):
    return nan_case(b, "estimate_labels")


@case("nan-model-parse", "parses a video with a NaN-weight run", "exit 2; no result folder for the video")
def _(b):
    out_dir = b.fresh("nan-model-parse")
    out = b.parse(b.fixture("clips")["blip"], "--checkpoint", os.path.join(b.fixture("nan_run"), "DHHN"),
                  "--out_dir", out_dir, "--features_dir", b.fixture("parsed_features"), "--random_weights",
                  "--device", "cpu", "--progress", "off")
    made = os.path.exists(os.path.join(out_dir, "blip"))
    return refused(out, ["inf or NaN"], checks=[(not made, WEAK, "wrote a result folder")])


# ------------------------------------------------------------------------------------------------
# 10. flags that do nothing in the mode or schedule

UNUSED_CASES = [
    ("unused-warm-up-with-steplr", "train", ("--warm_up_epoch", "3"), "--warm_up_epoch"),
    ("unused-lr-min-with-steplr", "train", ("--lr_min", "1e-5"), "--lr_min"),
    ("unused-lr-step-with-cosine", "train", ("--scheduler", "warm_up_cos_anneal", "--epochs", "3", "--warm_up_epoch",
                                             "1", "--lr_step", "5"), "--lr_step"),
    ("unused-resume-at-test", "test", ("--resume",), "--resume"),
    ("unused-epochs-at-test", "test", ("--epochs", "3"), "--epochs"),
    ("unused-lr-at-val", "val", ("--lr", "1e-3"), "--lr"),
    ("unused-export-dir-in-train", "train", ("--export_dir", "E"), "--export_dir"),
    ("unused-refined-labels-in-train", "train", ("--refined_labels", "f.pkl"), "--refined_labels"),
    ("unused-cuda-graph-at-estimate", "estimate_labels", ("--cuda_graph",), "--cuda_graph"),
    ("unused-pseudo-dir-at-estimate", "estimate_labels", ("--audio_pseudo_dir", "X"), "--audio_pseudo_dir"),
]


def unused_case(b, case_id, mode, flags, name):
    save = b.fresh(case_id)
    argv = b.train_flags(save, *flags) if mode == "train" else b.eval_flags(save, *flags, mode=mode)
    out = b.main(*argv)
    return refused(out, [name], checks=[(not os.path.exists(save), WEAK, "made the run folder")])


for _id, _mode, _flags, _name in UNUSED_CASES:
    case(_id, f"--mode {_mode} with {' '.join(_flags)}", f"exit 2 naming {_name} and where it acts")(
        functools.partial(unused_case, case_id=_id, mode=_mode, flags=_flags, name=_name))


@case("valor-test-flags-without-checkpoint", "runs VALOR's test script (MMIL_Net, --model_name, pseudo-label folders) "
      "in a folder without models/", "exit 2 naming model_VALOR's checkpoint; pseudo folders noted; no models/ made")
def _(b):
    root = valor_layout(b, "cases/valor-test-flags-without-checkpoint")
    out = b.main(*VALOR_TEST_WORDS, "--device", "cpu", "--progress", "off", cwd=root)
    models = os.path.join(root, "models")
    return refused(out, ["model_VALOR"], checks=[
        ("--audio_pseudo_dir: not used" in out.stdout, WEAK, "no note that the pseudo-label folders are unused"),
        (not os.path.exists(models), WEAK, f"created {b.show(models)} ({sorted(listing(models))})")])


@case("valor-test-flags-with-release", "installs a VALOR release with download_models.py --from, then runs VALOR's "
      "test script", "exit 0 with the test table; the pseudo-label folders noted as unused")
def _(b):
    root = valor_layout(b, "cases/valor-test-flags-with-release")
    b.setup([PYTHON, os.path.join(REPO_ROOT, "scripts", "download_models.py"), "VALOR", "--from",
             b.fixture("valor_release"), "--models_dir", os.path.join(root, "models")], "installing VALOR")
    out = b.main(*VALOR_TEST_WORDS, "--device", "cpu", "--progress", "off", cwd=root)
    return succeeded(out, [has(out, "--audio_pseudo_dir: not used by --mode test", WEAK, "no note of the unused "
                                                                                        "pseudo-label folders"),
                           has_line(out, r"^test: ", WRONG, "no test table")])


# ------------------------------------------------------------------------------------------------
# 11. the shell scripts, passing their extra flags to every step

@case("script-origin-extra-flags", "SYNTHETIC_SIZE=tiny LLP_ROOT=... sh DHHN_origin.sh --epochs 1 --batch-size 16 ...",
      "exit 0: trains, tests, notes that --epochs is not used by the test step")
def _(b):
    save = b.fresh("script-origin")
    out = b.shell("DHHN_origin.sh", "--epochs", "1", "--batch-size", "16", "--model_save_dir", save, "--device", "cpu",
                  "--progress", "off", env={"SYNTHETIC_SIZE": "tiny", "LLP_ROOT": b.llp})
    return succeeded(out, [has(out, "--epochs: not used by --mode test", WEAK, "no note of the flags the test "
                                                                              "step does not use"),
                           has(out, "test: DHHN dual (best-audio + best-visual)", WRONG, "no test table")])


@case("script-refinement-extra-flags", "SAVE_DIR=... LLP_ROOT=... sh DHHN_refinement.sh --epochs 1 --batch-size 16 ...",
      "exit 0: the MA chain (train, estimate, retrain, test)")
def _(b):
    out = b.shell("DHHN_refinement.sh", "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--progress", "off",
                  env={"SYNTHETIC_SIZE": "tiny", "LLP_ROOT": b.llp, "SAVE_DIR": b.fresh("script-refinement")})
    return succeeded(out, [has(out, "test: DHHN dual (best-audio + best-visual)", WRONG, "no test table")])


@case("script-valor-extra-flags", "LLP_ROOT=... sh VALOR.sh --epochs 2 --warm_up_epoch 1 --model_save_dir ...",
      "exit 0: pseudo-labels made, VALOR trained and tested")
def _(b):
    root = b.variant("script-valor")
    out = b.shell("VALOR.sh", "--epochs", "2", "--warm_up_epoch", "1", "--model_save_dir", b.fresh("script-valor"),
                  "--device", "cpu", "--progress", "off", env={"SYNTHETIC_SIZE": "tiny", "LLP_ROOT": root})
    return succeeded(out, [has_line(out, r"^test: ", WRONG, "no test table")])


@case("script-refinement-own-checkpoint", "sh DHHN_refinement.sh --checkpoint X", "exit 2 naming --checkpoint")
def _(b):
    out = b.shell("DHHN_refinement.sh", "--checkpoint", "X", env={"LLP_ROOT": b.llp,
                                                                  "SAVE_DIR": b.fresh("script-refinement-own")})
    return refused(out, ["--checkpoint"])


@case("script-origin-bad-number", "sh DHHN_origin.sh --epochs 0", "exit 2 naming --epochs 0; the test step not run")
def _(b):
    save = b.fresh("script-origin-bad-number")
    out = b.shell("DHHN_origin.sh", "--epochs", "0", "--model_save_dir", save, env={"LLP_ROOT": b.llp})
    return refused(out, ["--epochs 0"], checks=[(not os.path.exists(save), WEAK, "made the run folder")])


@case("script-refinement-bad-estimator", "ESTIMATOR=bogus sh DHHN_refinement.sh", "exit 2 naming ESTIMATOR")
def _(b):
    out = b.shell("DHHN_refinement.sh", env={"LLP_ROOT": b.llp, "ESTIMATOR": "bogus",
                                             "SAVE_DIR": b.fresh("script-refinement-bogus")})
    return refused(out, ["ESTIMATOR=bogus"])


# ------------------------------------------------------------------------------------------------
# 12. splits that share videos

def overlap_case(b, case_id, flags, names, root=None, mode="train"):
    save = b.made(case_id)
    argv = b.train_flags(save, *flags, root=root) if mode == "train" else b.eval_flags(save, *flags, root=root)
    out = b.main(*argv)
    left = written_since(save, {})
    return refused(out, names, checks=[(not left, WEAK, f"wrote {left}")],
                   if_passed="checkpoints selected on, or scores of, videos of another split")


@case("split-val-is-test", "trains with --label_val pointing at the test file", "exit 2 naming both files and counts")
def _(b):
    test = b.data_file(SPLIT_FILES["test"])
    return overlap_case(b, "split-val-is-test", ("--label_val", test), ["--label_val", "--label_test", "share 16"])


@case("split-train-is-val", "trains with --label_val pointing at the train file", "exit 2 naming both files")
def _(b):
    train = b.data_file(SPLIT_FILES["train"])
    return overlap_case(b, "split-train-is-val", ("--label_val", train), ["--label_train", "--label_val"])


@case("split-train-holds-val-videos", "trains with a train list that also holds 3 val videos",
      "exit 2 naming both files and the count")
def _(b):
    root = b.variant("split-train-holds-val-videos")
    with open(b.data_file(SPLIT_FILES["val"], root)) as handle:
        rows = handle.read().splitlines()[1:4]
    edit_lines(b.data_file(SPLIT_FILES["train"], root), lambda lines: lines + rows)
    return overlap_case(b, "split-train-holds-val-videos", (), ["--label_train", "--label_val", "share 3 video(s)"],
                        root=root)


@case("split-train-holds-val-ids", "trains with a train list holding another clip of a val video (same 11-char id)",
      "exit 2 naming the shared YouTube id")
def _(b):
    root = b.variant("split-train-holds-val-ids")
    other_clip = b.names("val")[0][:YOUTUBE_ID_LENGTH] + "_0_10"
    edit_lines(b.data_file(SPLIT_FILES["train"], root), lambda lines: lines + [f"{other_clip}\tSpeech"])
    return overlap_case(b, "split-train-holds-val-ids", (), ["1 YouTube id", repr(b.names("val")[0][:11])], root=root)


@case("split-test-is-val-at-test", "tests with --label_test pointing at the val file", "exit 2 naming both files")
def _(b):
    val = b.data_file(SPLIT_FILES["val"])
    return overlap_case(b, "split-test-is-val-at-test", ("--label_test", val), ["--label_val", "--label_test"],
                        mode="test")


@case("split-overlap-allowed", "trains with --label_val = the test file and --allow_split_overlap",
      "exit 0 with a warning; the summary records the overlap")
def _(b):
    save = b.fresh("split-overlap-allowed")
    out = b.main(*b.train_flags(save, "--allow_split_overlap", "--label_val", b.data_file(SPLIT_FILES["test"])))
    recorded = None
    if out.returncode == 0:
        with open(os.path.join(save, "DHHN_train_summary.json")) as handle:
            recorded = json.load(handle)["provenance"].get("split_overlaps")
    return succeeded(out, [has(out, "warning: --allow_split_overlap", WEAK, "no warning"),
                           (bool(recorded), WRONG, "the summary does not record the overlap")])


# ------------------------------------------------------------------------------------------------
# 13. rescore.py

def rescore(b, *flags, cwd=None):
    return b.script("rescore", *flags, cwd=cwd)


@case("rescore-export-matches-run", "re-scores the test export with the test label and eval files",
      "exit 0 with exactly the numbers of the run's test summary")
def _(b):
    export = b.fixture("test_export")
    out_json = b.fresh("rescore-export-matches-run.json")
    out = rescore(b, "--export_dir", export, "--label_csv", b.data_file(SPLIT_FILES["test"]), *b.eval_csv_flags(),
                  "--out_json", out_json)
    expected = test_tables(b)
    tables = {}
    if out.returncode == 0:
        with open(out_json) as handle:
            tables = json.load(handle)["tables"]
    differ = [f"{row} {key}" for row, values in expected.items() for key, value in values.items()
              if abs(tables.get(row, {}).get(key, float("nan")) - value) > 1e-9 or key not in tables.get(row, {})]
    return succeeded(out, [(not differ, WRONG, f"numbers differ from the run's: {differ[:3]}")])


@case("rescore-test-export-val-label", "re-scores the test export with --label_csv of val", "exit 2 naming --label_csv")
def _(b):
    out = rescore(b, "--export_dir", b.fixture("test_export"), "--label_csv", b.data_file(SPLIT_FILES["val"]),
                  *b.eval_csv_flags())
    return refused(out, ["--label_csv"], if_passed="a table mixing splits")


@case("rescore-test-export-val-eval-files", "re-scores the test export with eval files holding only val rows",
      "exit 2 naming the eval files")
def _(b):
    root = b.variant("rescore-val-eval")
    val = set(b.names("val"))
    for kind in EVAL_FILES.values():
        edit_lines(b.data_file(kind, root), lambda lines: lines[:1] + [line for line in lines[1:]
                                                                        if line.split("\t")[0] in val])
    out = rescore(b, "--export_dir", b.fixture("test_export"), *b.eval_csv_flags(root))
    return refused(out, ["--eval_audio_csv"], if_passed="every test video scored against empty truth")


def mixed_export(b, case_id, kind, old_manifest):
    export = b.fresh(case_id)
    shutil.copytree(b.fixture("test_export"), export)
    row = main_row(export)
    other = os.path.join(b.fixture("val_export"), main_row(b.fixture("val_export"))[kind])
    with open(other, "rb") as first, open(os.path.join(export, row[kind]), "rb") as second:
        if first.read() == second.read():   # a header-only event file is the same in every split
            raise SetupFailed(f"the val and test {kind} files are identical: nothing to mix")
    shutil.copy(other, os.path.join(export, row[kind]))
    if old_manifest:   # written before exports recorded checksums (format 1)
        path = os.path.join(export, "manifest.json")
        with open(path) as handle:
            manifest = json.load(handle)
        for key in ("format", "filenames", "sha256"):
            manifest.pop(key, None)
        clobber(path, json.dumps(manifest).encode())
    rule = ("--rule", "dhhn") if kind == "npz" else ()
    out = rescore(b, "--export_dir", export, *rule, *b.eval_csv_flags())
    return refused(out, [row[kind]], if_passed="a table mixing val and test rows")


case("rescore-mixed-row-files", "re-scores a test export whose main audio event file was replaced by the val "
     "export's", "exit 2 naming the replaced file")(
    functools.partial(mixed_export, case_id="rescore-mixed-row-files", kind="audio_csv", old_manifest=False))
case("rescore-mixed-old-manifest", "re-scores under --rule dhhn a test export of manifest format 1 (no checksums) "
     "whose main .npz is the val export's", "exit 2 naming the file of the other split")(
    functools.partial(mixed_export, case_id="rescore-mixed-old-manifest", kind="npz", old_manifest=True))


def global_prob_max(export):
    with np.load(os.path.join(export, main_row(export)["npz"])) as content:
        return float(content["global_prob"].max())


def rule_case(b, export_fixture, rule):
    export = b.fixture(export_fixture)
    out = rescore(b, "--export_dir", export, "--rule", rule, *b.eval_csv_flags())
    peak = global_prob_max(export)
    return succeeded(out, [has_line(out, rf"\[rule: {rule}", WRONG, "no table of the rule")],
                     note=f"global_prob up to {peak:.3f} in this export" + (" (above 1)" if peak > 1 else
                                                                           " (never above 1 in this tiny export)"))


case("rescore-rule-han-dhhn-export", "re-scores the DHHN test export under --rule han",
     "exit 0 with the rule's table (global_prob may exceed 1)")(
    functools.partial(rule_case, export_fixture="test_export", rule="han"))
case("rescore-rule-coleaf-han-export", "re-scores a HAN test export under --rule coleaf",
     "exit 0 with the rule's table (HAN's global_prob may exceed 1)")(
    functools.partial(rule_case, export_fixture="han_test_export", rule="coleaf"))


def scaled_export(b, case_id, peak):
    """The HAN test export with every row's global_prob scaled to reach `peak`, its manifest's checksums
    updated: the export of a model whose MMIL pooling gives such values (a tiny run never does)."""
    export = b.fresh(case_id)
    shutil.copytree(b.fixture("han_test_export"), export)
    manifest_path = os.path.join(export, "manifest.json")
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    for row in manifest["rows"].values():
        path = os.path.join(export, row["npz"])
        with np.load(path) as content:
            arrays = {key: content[key] for key in content.files}
        arrays["global_prob"] = (arrays["global_prob"] * (peak / arrays["global_prob"].max())).astype(np.float32)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        clobber(path, buffer.getvalue())
        manifest["sha256"][row["npz"]] = hashlib.sha256(buffer.getvalue()).hexdigest()
    clobber(manifest_path, json.dumps(manifest).encode())
    return export


@case("rescore-rule-global-above-1", "re-scores under --rule han an export whose global_prob reaches 1.6 "
      "(MMIL pooling allows up to 2)", "exit 0 with the rule's table")
def _(b):
    out = rescore(b, "--export_dir", scaled_export(b, "rescore-rule-global-above-1", 1.6), "--rule", "han",
                  *b.eval_csv_flags())
    return succeeded(out, [has_line(out, r"\[rule: han", WRONG, "no table of the rule")],
                     note="(an export of the tiny HAN run, global_prob scaled to 1.6, checksums updated)")


@case("rescore-rule-global-impossible", "re-scores under --rule han an export whose global_prob reaches 2.5",
      "exit 2 naming the file: no model gives that")
def _(b):
    export = scaled_export(b, "rescore-rule-global-impossible", 2.5)
    out = rescore(b, "--export_dir", export, "--rule", "han", *b.eval_csv_flags())
    return refused(out, [main_row(export)["npz"]], if_passed="scored impossible probabilities")


@case("rescore-rule-cmpae-tuned-on-val", "--rule cmpae --tune_on the val export", "exit 0 with the tuned table")
def _(b):
    out = rescore(b, "--export_dir", b.fixture("test_export"), "--rule", "cmpae", "--tune_on", b.fixture("val_export"),
                  *b.eval_csv_flags())
    return succeeded(out, [has(out, "tuned on val", WRONG, "no tuned table")])


@case("rescore-rule-cmpae-tuned-on-test", "--rule cmpae --tune_on the test export itself", "exit 2 naming --tune_on")
def _(b):
    out = rescore(b, "--export_dir", b.fixture("test_export"), "--rule", "cmpae", "--tune_on",
                  b.fixture("test_export"), *b.eval_csv_flags())
    return refused(out, ["--tune_on"], if_passed="thresholds tuned on the scored test videos")


@case("rescore-out-json-under-a-file", "re-scores with --out_json under a file", "exit 2 naming --out_json")
def _(b):
    path = b.fresh("rescore-out-json-file")
    clobber(path, b"notes")
    out = rescore(b, "--export_dir", b.fixture("test_export"), *b.eval_csv_flags(), "--out_json",
                  os.path.join(path, "scores.json"))
    return refused(out, ["--out_json"])


@case("rescore-out-json-is-a-folder", "re-scores with --out_json naming a folder", "exit 2 naming --out_json")
def _(b):
    out = rescore(b, "--export_dir", b.fixture("test_export"), *b.eval_csv_flags(), "--out_json",
                  b.made("rescore-out-json-folder"))
    return refused(out, ["--out_json"])


@case("rescore-default-eval-outside-data", "re-scores without eval flags from a folder without data/",
      "exit 2 naming --eval_audio_csv and --eval_visual_csv")
def _(b):
    out = rescore(b, "--export_dir", b.fixture("test_export"), cwd=b.made("rescore-elsewhere"))
    return refused(out, ["--eval_audio_csv", "--eval_visual_csv"])


@case("rescore-pred-csvs-of-another-split", "re-scores the test export's event files (--pred_audio_csv ...) "
      "with --label_csv of val", "exit 2: the predictions name none of the val videos")
def _(b):
    export = b.fixture("test_export")
    row = main_row(export)
    out = rescore(b, "--pred_audio_csv", os.path.join(export, row["audio_csv"]), "--pred_visual_csv",
                  os.path.join(export, row["visual_csv"]), "--label_csv", b.data_file(SPLIT_FILES["val"]),
                  *b.eval_csv_flags())
    return refused(out, [os.path.join(export, row["audio_csv"])],
                   if_passed="a table of val videos scored as predicting nothing")


@case("rescore-not-an-export", "re-scores an empty folder as --export_dir", "exit 2 naming the folder")
def _(b):
    folder = b.made("rescore-not-an-export")
    return refused(rescore(b, "--export_dir", folder, *b.eval_csv_flags()), [folder])


@case("rescore-row-file-missing", "re-scores an export one of whose event files was deleted", "exit 2 naming it")
def _(b):
    export = b.fresh("rescore-row-file-missing")
    shutil.copytree(b.fixture("test_export"), export)
    os.remove(os.path.join(export, main_row(export)["visual_csv"]))
    return refused(rescore(b, "--export_dir", export, *b.eval_csv_flags()), [main_row(export)["visual_csv"]])


# ------------------------------------------------------------------------------------------------
# 14. the other scripts

def sweep(b, case_id, *flags, extra=()):
    out_dir = b.fresh(case_id)
    out = b.script("sweep", *flags, "--seeds", "1", "--llp_root", b.llp, "--out_dir", out_dir, "--no_plots",
                   *(("--", *extra) if extra else ()))
    return out_dir, out


def sweep_refused(b, case_id, config, name, extra=()):
    out_dir, out = sweep(b, case_id, "--config", config, extra=extra)
    return refused(out, [name], checks=[(not os.path.exists(out_dir), WEAK, "made the sweep's folder")],
                   if_passed="the sweep ran a configuration that cannot work")


for _id, _config, _name, _extra in [
        ("sweep-bad-flag", "A=--bogus 1", "--bogus", ()),
        ("sweep-flag-without-value", "A=--epochs", "--epochs", ()),
        ("sweep-epochs-0", "A=--epochs 0", "--epochs 0", ()),
        ("sweep-own-flag", "A=--checkpoint X", "--checkpoint", ()),
        ("sweep-bad-flag-after-dashes", "A=--epochs 1", "--bogus", ("--bogus",))]:
    case(_id, f"sweep.py --config {_config!r}" + (f" -- {' '.join(_extra)}" if _extra else ""),
         f"exit 2 naming {_name}, nothing started")(
        functools.partial(sweep_refused, case_id=_id, config=_config, name=_name, extra=_extra))


@case("sweep-runs-and-says-so", "sweeps one tiny configuration with output to a file",
      "exit 0; each run's start and finish line with its own duration")
def _(b):
    _, out = sweep(b, "sweep-runs", "--config", "A=--epochs 1 --batch-size 16", extra=("--device", "cpu",
                                                                                      "--progress", "off"))
    return succeeded(out, [has_line(out, r": started, 2 step\(s\)", WEAK, "no line when the run started"),
                           has_line(out, r": done in \d", WEAK, "no finish line with the run's duration")])


@case("download-models-from-empty", "download_models.py --from an empty folder", "exit 2 naming --from")
def _(b):
    models = b.fresh("download-empty-models")
    out = b.script("download_models", "--from", b.made("download-empty"), "--models_dir", models)
    verdict = refused(out, ["--from"], checks=[(not os.path.exists(models), WEAK, "made --models_dir")])
    if out.returncode == 1:   # its docstring promises 1 for 'cannot be obtained'; RELIABILITY.md 2 for a user's mistake
        return verdict[0], verdict[1] + " (download_models.py's docstring documents exit 1 for a file it cannot obtain)"
    return verdict


@case("download-models-unknown-name", "download_models.py VALOR3", "exit 2 naming VALOR3 and the known names")
def _(b):
    out = b.script("download_models", "VALOR3", "--from", b.made("download-unknown"), "--models_dir",
                   b.fresh("download-unknown-models"))
    return refused(out, ["VALOR3", "VALOR++"])


@case("download-models-wrong-file", "download_models.py --from a folder whose model_VALOR file is a DHHN checkpoint",
      "exit 2 naming the file; nothing installed")
def _(b):
    source = b.made("download-wrong")
    os.makedirs(os.path.join(source, "model_VALOR"))
    os.link(os.path.join(b.fixture("dhhn"), "DHHN_best_audio.pt"),
            os.path.join(source, "model_VALOR", "checkpoint_best.pt"))
    models = b.fresh("download-wrong-models")
    out = b.script("download_models", "VALOR", "--from", source, "--models_dir", models)
    return refused(out, ["checkpoint_best.pt"], checks=[(not listing(models), WEAK, "installed something")])


@case("download-models-from-release", "download_models.py VALOR --from a folder holding VALOR's file",
      "exit 0; the file and its .release.json installed")
def _(b):
    models = b.fresh("download-release-models")
    out = b.script("download_models", "VALOR", "--from", b.fixture("valor_release"), "--models_dir", models)
    installed = sorted(listing(models))
    return succeeded(out, [(installed == ["model_VALOR/checkpoint_best.pt",
                                          "model_VALOR/checkpoint_best.pt.release.json"], WRONG,
                            f"installed {installed}")])


@case("published-flags-unknown", "published_flags.py valour --mode test", "exit 2 naming the known configurations")
def _(b):
    return refused(b.script("published_flags", "valour", "--mode", "test"), ["valour", "valor_plus"])


@case("published-flags-test", "published_flags.py valor --mode test", "exit 0 printing the network flags")
def _(b):
    out = b.script("published_flags", "valor", "--mode", "test")
    return succeeded(out, [has(out, "--model han", WRONG, "no --model han"),
                           ("--epochs" not in out.stdout, WRONG, "prints --epochs, a training flag")])


@case("make-synthetic-negative", "make_synthetic_llp.py --n_val -1", "exit 2 naming --n_val; nothing written")
def _(b):
    out_dir = b.fresh("make-synthetic-negative")
    out = b.script("make_synthetic_llp", "--out", out_dir, "--n_val", "-1")
    return refused(out, ["--n_val"], checks=[(not os.path.exists(out_dir), WEAK, "made the folder")])


@case("make-synthetic-into-llp-files", "make_synthetic_llp.py --out a folder holding the user's own data/AVVP_*.csv",
      "exit 2 naming the folder; its files untouched")
def _(b):
    out_dir = b.made("make-synthetic-used")
    os.makedirs(os.path.join(out_dir, "data"))
    for name in SPLIT_FILES.values():
        shutil.copy(b.data_file(name), os.path.join(out_dir, "data"))
    before = listing(out_dir)
    out = b.script("make_synthetic_llp", "--out", out_dir, "--size", "tiny")
    left = written_since(out_dir, before)
    return refused(out, [out_dir], checks=[(not left, WRONG, f"wrote into it: {left[:4]}")],
                   if_passed="the user's annotation files were overwritten")


@case("make-pseudo-precision-0", "make_pseudo_labels.py --precision 0", "exit 2 naming --precision")
def _(b):
    out_dir = b.fresh("make-pseudo-precision-0")
    out = b.script("make_pseudo_labels", "--root", b.llp, "--out", out_dir, "--precision", "0", "--recall", "0.5")
    return refused(out, ["precision"], checks=[(not os.path.exists(out_dir), WEAK, "made the folder")])


@case("make-pseudo-recall-above-1", "make_pseudo_labels.py --recall 1.5", "exit 2 naming --recall")
def _(b):
    out_dir = b.fresh("make-pseudo-recall")
    out = b.script("make_pseudo_labels", "--root", b.llp, "--out", out_dir, "--precision", "0.9", "--recall", "1.5")
    return refused(out, ["recall"], checks=[(not os.path.exists(out_dir), WEAK, "made the folder")])


@case("refinement-quality-missing-flags", "refinement_quality.py --flags of a file that does not exist",
      "exit 2 naming the file")
def _(b):
    path = b.path("nowhere", "flags.pkl")
    return refused(b.script("refinement_quality", "--root", b.llp, "--flags", path), [path])


@case("visualize-unknown-video", "visualize_parsing.py --videos of a name not in the export",
      "exit 2 naming the video")
def _(b):
    export = b.fixture("test_export")
    out = b.script("visualize_parsing", "--predictions", os.path.join(export, main_row(export)["npz"]), "--videos",
                   "zzzzzzzzzzz_0_10", *b.eval_csv_flags(), "--out_dir", b.fresh("visualize-unknown"))
    return refused(out, ["zzzzzzzzzzz_0_10"])


@case("visualize-best", "visualize_parsing.py --best 2 on the test export", "exit 0; two PNG files")
def _(b):
    export = b.fixture("test_export")
    out_dir = b.fresh("visualize-best")
    out = b.script("visualize_parsing", "--predictions", os.path.join(export, main_row(export)["npz"]), "--best", "2",
                   *b.eval_csv_flags(), "--out_dir", out_dir)
    pictures = [path for path in listing(out_dir) if path.endswith(".png")]
    return succeeded(out, [(len(pictures) == 2, WRONG, f"{len(pictures)} PNG file(s)")])


@case("download-llp-check-empty", "download_llp.py --check on an empty folder",
      "exit 1 (the check's answer, as documented), every missing file named")
def _(b):
    out = b.script("download_llp", "--check", "--out", b.made("download-llp-check"))
    return refused(out, ["AVVP_train.csv", "AVVP_eval_visual.csv"], code=1)


@case("download-valor-features-check-only", "download_valor_features.py --check_only on an LLP without CLIP/CLAP",
      "exit 2 naming the missing folders")
def _(b):
    return refused(b.script("download_valor_features", "--llp_root", b.llp, "--check_only"), ["CLIP", "CLAP"])


# ------------------------------------------------------------------------------------------------
# 15. feature extraction and parsing of the user's own videos

def video_flags():
    return ["--random_weights", "--device", "cpu", "--progress", "off"]


def bad_clip_names(clips):
    return [clips[name] for name in ("mute", "blink", "corrupt", "truncated")]


@case("extract-bad-videos", "extract_features.py on a folder with a good video and four bad ones "
      "(no audio, 0.5 s, not a video, truncated)", "exit 2 listing all four; --out_dir not created")
def _(b):
    clips = b.fixture("clips")
    out_dir = b.fresh("extract-bad-videos")
    out = b.script("extract_features", clips["folder"], "--out_dir", out_dir, *video_flags())
    return refused(out, ["4 problem(s)", *bad_clip_names(clips)],
                   checks=[(not os.path.exists(out_dir), WEAK, f"made {b.show(out_dir)}")])


@case("extract-missing-path", "extract_features.py on a path that does not exist", "exit 2 naming it")
def _(b):
    path = b.path("nowhere", "video.mp4")
    out_dir = b.fresh("extract-missing")
    out = b.script("extract_features", path, "--out_dir", out_dir, *video_flags())
    return refused(out, [path], checks=[(not os.path.exists(out_dir), WEAK, "made --out_dir")])


@case("extract-batch-0", "extract_features.py --audio_batch 0", "exit 2 naming --audio_batch")
def _(b):
    out_dir = b.fresh("extract-batch-0")
    out = b.script("extract_features", b.fixture("clips")["good"], "--out_dir", out_dir, "--audio_batch", "0",
                   *video_flags())
    return refused(out, ["--audio_batch"], checks=[(not os.path.exists(out_dir), WEAK, "made --out_dir")])


@case("extract-window-lines", "extracts snippet features of a 31-s video with output to a file",
      "exit 0; progress lines for finished windows (every 10 s), then the video's line")
def _(b):
    out = b.script("extract_features", b.fixture("clips")["long"], "--out_dir", b.fresh("extract-window-lines"),
                   "--kinds", "snippets", *video_flags())
    return succeeded(out, [has_line(out, r": window \d+/\d+ \(", WEAK, "no window line: silent for the whole video"),
                           has_line(out, r"done in [\d.]+ s \(video 1/1\)", WEAK, "no line for the finished video")])


@case("parse-bad-videos", "parse_video.py on a good video, four bad ones and a path that does not exist",
      "exit 2 listing all five; --out_dir not created")
def _(b):
    clips = b.fixture("clips")
    out_dir = b.fresh("parse-bad-videos")
    absent = b.path("nowhere", "absent.mp4")
    out = b.parse(clips["good"], *bad_clip_names(clips), absent, "--checkpoint",
                  os.path.join(b.fixture("dhhn"), "DHHN"), "--out_dir", out_dir, *video_flags())
    return refused(out, ["5 problem(s)", *bad_clip_names(clips), absent],
                   checks=[(not os.path.exists(out_dir), WEAK, f"made {b.show(out_dir)}")])


@case("parse-missing-checkpoint", "parse_video.py --checkpoint runs/dhhn/NOPE", "exit 2 naming NOPE, before extracting")
def _(b):
    out_dir = b.fresh("parse-missing-checkpoint")
    out = b.parse(b.fixture("clips")["blip"], "--checkpoint", os.path.join(b.fixture("dhhn"), "NOPE"), "--out_dir",
                  out_dir, *video_flags())
    return refused(out, ["NOPE"], checks=[(not os.path.exists(out_dir), WEAK, f"made {b.show(out_dir)}")])


@case("parse-blip", "parse_video.py on a 1-s video with a trained run", "exit 0; events, CSVs and timeline written")
def _(b):
    out_dir = b.fresh("parse-blip")
    out = b.parse(b.fixture("clips")["blip"], "--checkpoint", os.path.join(b.fixture("dhhn"), "DHHN"), "--out_dir",
                  out_dir, "--features_dir", b.fixture("parsed_features"), *video_flags())
    written = sorted(listing(os.path.join(out_dir, "blip")))
    return succeeded(out, [("blip_events.json" in written and "blip_timeline.png" in written, WRONG,
                            f"wrote {written}")])


# ------------------------------------------------------------------------------------------------
# 16. long silences, with output to a file

@case("silence-train", "trains with output to a file, --log-interval 0 --log_seconds 1e-9 --feature_cache none",
      "exit 0; a line per loading phase, per feature file read, and per step")
def _(b):
    out = b.main(*b.train_flags(b.fresh("silence-train"), "--log-interval", "0", "--log_seconds", "1e-9",
                                "--feature_cache", "none"))
    return succeeded(out, [has(out, "train: loading labels, truth and features", WEAK, "no line when loading starts"),
                           has(out, "train: 48 videos loaded and checked in", WEAK, "no line when loading ends"),
                           has(out, "audio features: ", WEAK, "no line while feature files are read"),
                           has_line(out, r"^epoch 1 step 3/3 \| loss", WEAK, "no time-based step lines")])


@case("silence-test", "tests with output to a file", "exit 0; lines when loading the split starts and ends")
def _(b):
    out = b.main(*b.eval_flags(clone(b.fixture("dhhn"), b.fresh("silence-test"))))
    return succeeded(out, [has(out, "test: loading labels, truth and features", WEAK, "no line when loading starts"),
                           has(out, "test: 16 videos loaded and checked in", WEAK, "no line when loading ends")])


# ------------------------------------------------------------------------------------------------
# running and reporting

def run_case(battery, one):
    battery.commands, battery.last = [], None
    began = time.monotonic()
    extra = {}
    try:
        cls, reason = one.body(battery)
    except SetupFailed as error:
        cls, reason = SETUP_FAILED, str(error)
    except Exception as error:   # a bug of the battery: reported apart, never counted as a finding
        frame = traceback.extract_tb(error.__traceback__)[-1]
        cls, reason = BATTERY_ERROR, f"{type(error).__name__}: {error} (line {frame.lineno})"
        extra["traceback"] = traceback.format_exc()
    finally:
        battery.stop_all()
    last = battery.last
    return Result(one.id, one.what, one.expected, list(battery.commands), cls, battery.show(reason),
                  round(time.monotonic() - began, 1), returncode=last.returncode if last else None,
                  stdout_tail=battery.show(last.stdout[-2000:]) if last else "",
                  stderr_tail=battery.show(last.stderr[-2000:]) if last else "", extra=extra)


def print_table(results):
    width = max(len(result.id) for result in results)
    print(f"{'id':<{width}}  {'class':<13}  reason")
    for result in results:
        print(f"{result.id:<{width}}  {result.cls:<13}  {result.reason}")


def counts(results):
    found = {cls: 0 for cls in (*FINDING_CLASSES, SETUP_FAILED, BATTERY_ERROR)}
    for result in results:
        found[result.cls] += 1
    return found


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--only", nargs="+", metavar="ID", help="run these cases only (ids from --list)")
    parser.add_argument("--out", help="write every result as JSON there")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (its path is printed)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.list:
        for one in CASES.values():
            print(f"{one.id}: {one.what} -> {one.expected}")
        return 0
    chosen = list(CASES.values())
    if args.only:
        unknown = [name for name in args.only if name not in CASES]
        if unknown:
            print(f"error: --only: unknown case(s) {', '.join(unknown)} (see --list)", file=sys.stderr)
            return 2
        chosen = [CASES[name] for name in args.only]
    work = tempfile.mkdtemp(prefix="reliability_battery_")
    battery = Battery(work)
    began = time.monotonic()
    results = []
    try:
        print(f"reliability battery: {len(chosen)} case(s) in {work}", file=sys.stderr, flush=True)
        battery.setup([PYTHON, os.path.join(REPO_ROOT, "scripts", "make_synthetic_llp.py"), "--size", "tiny", "--out",
                       battery.llp, "--no_progress"], "making the tiny synthetic LLP")
        for number, one in enumerate(chosen, 1):
            result = run_case(battery, one)
            results.append(result)
            print(f"[{number}/{len(chosen)}] {result.id}: {result.cls} ({result.seconds:.1f} s)", file=sys.stderr,
                  flush=True)
    finally:
        battery.stop_all()
        battery.thaw_all()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - began
    print_table(results)
    found = counts(results)
    scored = sum(found[cls] for cls in FINDING_CLASSES)
    print(f"\n{found[HANDLED]} handled, {found[WEAK]} weak, {found[WRONG]} wrong of {scored} case(s)"
          + (f"; {found[SETUP_FAILED]} not run (setup failed)" if found[SETUP_FAILED] else "")
          + (f"; {found[BATTERY_ERROR]} battery error(s)" if found[BATTERY_ERROR] else "")
          + f"; {seconds / 60:.1f} min")
    if args.out:
        record = {"work": "$WORK = the battery's temp folder, $REPO = the checkout", "seconds": round(seconds, 1),
                  "counts": found, "results": [vars(result) for result in results]}
        with open(args.out, "w") as handle:
            json.dump(record, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
