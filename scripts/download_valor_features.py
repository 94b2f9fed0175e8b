"""Fetch VALOR's CLIP and CLAP features and segment pseudo-labels (Franklin905/VALOR, NeurIPS 2023;
PROTOCOL.md §13) into the LLP root, and validate them against the LLP video list.

    python scripts/download_valor_features.py --llp_root .                  # from the Hugging Face dataset
    python scripts/download_valor_features.py --llp_root . --from DIR       # CLIP.zip/CLAP.zip (or CLIP/, CLAP/) in DIR
    python scripts/download_valor_features.py --llp_root . --check_only     # only validate what is there
    python scripts/download_valor_features.py --llp_root . --sets CLIP      # one of the two sets

The download needs the optional huggingface_hub (pip install -e ".[hf]"). Each set
arrives as one zip (avvp_data.llp.VALOR_ARCHIVES) that unpacks, as VALOR's README has it, into
<llp_root>/CLIP/{features,segment_pseudo_labels}/<youtube id>.npy and the same under CLAP/; a zip
with one more folder level on top is accepted, and members with an absolute path or `..` are refused
before anything is unpacked. A set is unpacked into a hidden sibling folder, validated there and only
then renamed into place, so an interrupted or refused run leaves no half-filled layout. A set already
in place and valid is left alone; an invalid one is replaced by a valid new copy.

Validation: every video of <llp_root>/data/AVVP_dataset_full.csv (or of the three split files) has
a file in each folder, with the shape of avvp_data/llp.py; features are finite floats,
pseudo-labels hold only 0 and 1 (VALOR saves them as int64). All problems are reported together in
one error; files of videos outside the list are a note. Exit codes: 0 in place and valid; 1 when an
archive cannot be obtained (not in --from, huggingface_hub missing, download failed); 2 when an
archive or the layout is refused (problems listed) or the video list is missing.
"""
import argparse
import os
import shutil
import sys
import tempfile
import zipfile

import numpy as np
from tqdm import tqdm

from avvp_data.annotations import read_video_labels
from avvp_data.feature_files import feature_file_name
from avvp_data.llp import (
    CLAP_FEATURE_SHAPE,
    CLIP_FEATURE_SHAPE,
    LABEL_FULL_CSV,
    LABEL_TEST_CSV,
    LABEL_TRAIN_CSV,
    LABEL_VAL_CSV,
    PSEUDO_LABEL_SHAPE,
    VALOR_ARCHIVES,
    VALOR_FEATURES_FOLDER,
    VALOR_HF_REPO,
    VALOR_PSEUDO_LABELS_FOLDER,
    VALOR_SETS,
)
from utils.errors import LLPDataError, UsageError, UserError

INSTALL_HINT = 'pip install -e ".[hf]"'
# set -> {folder: per-video shape}
VALOR_LAYOUT = {
    "CLIP": {VALOR_FEATURES_FOLDER: CLIP_FEATURE_SHAPE, VALOR_PSEUDO_LABELS_FOLDER: PSEUDO_LABEL_SHAPE},
    "CLAP": {VALOR_FEATURES_FOLDER: CLAP_FEATURE_SHAPE, VALOR_PSEUDO_LABELS_FOLDER: PSEUDO_LABEL_SHAPE},
}
VALOR_FOLDERS = (VALOR_FEATURES_FOLDER, VALOR_PSEUDO_LABELS_FOLDER)
# entries that macOS zip tools add; never part of the layout
ARCHIVE_JUNK = ("__MACOSX", ".DS_Store")
SHOWN_PER_KIND = 3   # paths named per kind of problem in the one-line error


class SourceError(UserError):
    """A set's archive cannot be obtained (not in --from, huggingface_hub missing, download failed)."""
    exit_code = 1


class ArchiveError(UserError):
    """An archive refused before anything is unpacked: not a zip, unsafe member paths, no layout."""


class ValorLayoutError(LLPDataError):
    """Files of the VALOR layout missing or wrong; the message counts them by kind, with paths."""


def _video_list_files(llp_root):
    data = os.path.join(llp_root, "data")
    full = os.path.join(data, LABEL_FULL_CSV)
    if os.path.isfile(full):
        return [full]
    splits = [os.path.join(data, name) for name in (LABEL_TRAIN_CSV, LABEL_VAL_CSV, LABEL_TEST_CSV)]
    if all(os.path.isfile(path) for path in splits):
        return splits
    raise UsageError(f"no LLP video list in {data}: {LABEL_FULL_CSV} (or {LABEL_TRAIN_CSV}, {LABEL_VAL_CSV} "
                     f"and {LABEL_TEST_CSV}) not found; fetch them with "
                     f"python scripts/download_llp.py --out {data}, or pass the right --llp_root")


def read_video_ids(llp_root):
    """Sorted file names `<youtube id>.npy` of every LLP video, from the full list or the union of
    the three split files under <llp_root>/data (PROTOCOL.md §2)."""
    names = set()
    for path in _video_list_files(llp_root):
        names.update(feature_file_name(filename) for filename in read_video_labels(path)[0])
    return sorted(names)


# --- validation --------------------------------------------------------------------------------

def _array_problem(array, shape, labels):
    """(kind, detail) of what is wrong with one loaded array, or None."""
    if array.shape != shape:
        return "wrong shape", f"{array.shape}, expected {shape}"
    if labels:
        if array.dtype.kind not in "biuf":
            return "wrong dtype", f"{array.dtype}, expected numbers 0/1"
        if not np.isin(array, (0, 1)).all():
            values = np.unique(array[~np.isin(array, (0, 1))])[:SHOWN_PER_KIND]
            return "not 0/1", f"values {', '.join(str(value) for value in values.tolist())}"
        return None
    if array.dtype.kind != "f":
        return "wrong dtype", f"{array.dtype}, expected float"
    if not np.isfinite(array).all():
        return "not finite", "NaN/Inf values"
    return None


def check_folder(folder, shown_as, shape, labels, file_names, progress=False):
    """(problems, extra file names, number of valid files) of one folder; a problem is
    (kind, path as shown, detail). `file_names` are the expected `<youtube id>.npy`."""
    if not os.path.isdir(folder):
        return [("missing folder", shown_as, f"{len(file_names)} videos expected")], [], 0
    present = set(os.listdir(folder))
    problems, valid = [], 0
    for name in tqdm(file_names, desc=shown_as, disable=not progress):
        path = f"{shown_as}/{name}"
        if name not in present:
            problems.append(("missing", path, ""))
            continue
        try:
            array = np.load(os.path.join(folder, name), allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            problems.append(("unreadable", path, str(error).splitlines()[0] if str(error) else ""))
            continue
        problem = _array_problem(array, shape, labels)
        if problem:
            problems.append((problem[0], path, problem[1]))
        else:
            valid += 1
    return problems, sorted(present - set(file_names)), valid


def check_set(set_dir, set_name, file_names, log=print, progress=False):
    """Problems of one set's folder `set_dir` (both subfolders); prints a summary line per
    subfolder and a note on files of videos outside the list."""
    if not os.path.isdir(set_dir):
        log(f"{set_name}: missing")
        return [("missing folder", set_name, "")]
    problems = []
    for folder, shape in VALOR_LAYOUT[set_name].items():
        shown_as = f"{set_name}/{folder}"
        found, extra, valid = check_folder(os.path.join(set_dir, folder), shown_as, shape,
                                           folder == VALOR_PSEUDO_LABELS_FOLDER, file_names, progress)
        problems += found
        log(f"{shown_as}: {valid} of {len(file_names)} videos valid, shape {shape}"
            + (f", {len(extra)} extra file(s)" if extra else ""))
        if extra:
            log(f"note: {shown_as}: {len(extra)} file(s) of videos not in the LLP list, ignored: "
                f"{', '.join(extra[:SHOWN_PER_KIND])}{' ...' if len(extra) > SHOWN_PER_KIND else ''}")
    return problems


def layout_error(problems, llp_root, fetched):
    """One ValorLayoutError counting `problems` by kind, with the first paths of each kind (paths
    are `<set>/<folder>/<id>.npy`); `fetched`: they are in new copies, which were not installed."""
    kinds = {}
    for kind, path, detail in problems:
        kinds.setdefault(kind, []).append(f"{path} ({detail})" if detail else path)
    parts = []
    for kind, paths in kinds.items():
        more = f" and {len(paths) - SHOWN_PER_KIND} more" if len(paths) > SHOWN_PER_KIND else ""
        parts.append(f"{len(paths)} {kind}: {', '.join(paths[:SHOWN_PER_KIND])}{more}")
    refused = sorted({path.split("/")[0] for _, path, _ in problems})
    where = (f"fetched for {llp_root}, {' and '.join(refused)} not installed" if fetched
             else f"under {llp_root}")
    return ValorLayoutError(f"{len(problems)} problem(s) in the VALOR files {where}: " + "; ".join(parts))


# --- obtaining an archive ------------------------------------------------------------------------

def download_archive(set_name, revision=None):
    """Path of the set's zip in the Hugging Face cache, downloaded from the dataset VALOR_HF_REPO."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise SourceError(f"downloading {VALOR_ARCHIVES[set_name]} needs huggingface_hub: {INSTALL_HINT} "
                          f"(or pass --from DIR with the zips)") from None
    try:
        return hf_hub_download(repo_id=VALOR_HF_REPO, filename=VALOR_ARCHIVES[set_name], repo_type="dataset",
                               revision=revision)
    except Exception as error:  # the library raises many types (HTTP, offline, not found, disk)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SourceError(f"{VALOR_ARCHIVES[set_name]}: cannot download from the Hugging Face dataset "
                          f"{VALOR_HF_REPO}: {reason}") from None


def find_sources(set_names, source_dir):
    """{set: path of its zip or unpacked folder in `source_dir`}; the zip wins when both are
    there. SourceError naming every set not found, before anything is unpacked."""
    if not os.path.isdir(source_dir):
        raise SourceError(f"{source_dir}: folder not found (--from)")
    found, missing = {}, []
    for name in set_names:
        archive, folder = os.path.join(source_dir, VALOR_ARCHIVES[name]), os.path.join(source_dir, name)
        if os.path.isfile(archive):
            found[name] = archive
        elif os.path.isdir(folder):
            found[name] = folder
        else:
            missing.append(f"{VALOR_ARCHIVES[name]} (or an unpacked {name}/)")
    if missing:
        raise SourceError(f"not found in {source_dir} (--from): {'; '.join(missing)}")
    return found


# --- unpacking ------------------------------------------------------------------------------------

def _parts(member_name):
    return [part for part in member_name.replace("\\", "/").split("/") if part]


def is_unsafe_member(member_name):
    """True for a member that would be written outside the destination (zip-slip): an absolute
    path, a drive letter, or a `..` component."""
    name = member_name.replace("\\", "/")
    return name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in name.split("/")


def plan_members(infos, archive, set_name):
    """[(ZipInfo, path parts below the set folder)] of the files under features/ and
    segment_pseudo_labels/, wherever the one folder holding them sits in the archive
    (`CLIP/`, `extra/CLIP/` or the top). ArchiveError for unsafe members, for no or several such
    folders, and for an archive of the other set."""
    unsafe = [info.filename for info in infos if is_unsafe_member(info.filename)]
    if unsafe:
        raise ArchiveError(f"{archive}: refused, {len(unsafe)} member(s) with an absolute path or '..' "
                           f"(would be written outside the destination): {', '.join(unsafe[:SHOWN_PER_KIND])}; "
                           f"nothing unpacked")
    planned, prefixes = [], set()
    for info in infos:
        parts = _parts(info.filename)
        if info.is_dir() or parts[0] in ARCHIVE_JUNK or parts[-1] in ARCHIVE_JUNK or parts[-1].startswith("._"):
            continue
        at = next((i for i, part in enumerate(parts[:-1]) if part in VALOR_FOLDERS), None)
        if at is not None:
            prefixes.add("/".join(parts[:at]))
            planned.append((info, parts[at:]))
    if not prefixes:
        raise ArchiveError(f"{archive}: no {VALOR_FEATURES_FOLDER}/ or {VALOR_PSEUDO_LABELS_FOLDER}/ folder in it")
    if len(prefixes) > 1:
        raise ArchiveError(f"{archive}: {VALOR_FEATURES_FOLDER}/ and {VALOR_PSEUDO_LABELS_FOLDER}/ under several "
                           f"folders ({', '.join(sorted(p or '<top>' for p in prefixes))}); expected one {set_name}/")
    others = [part for part in _parts(prefixes.pop()) if part in VALOR_SETS and part != set_name]
    if others:
        raise ArchiveError(f"{archive}: holds {others[0]}/, not {set_name}/ (swapped archives?)")
    return planned


def unpack_archive(archive, set_name, target, progress=False):
    """Unpack the set's features/ and segment_pseudo_labels/ from zip `archive` into `target`."""
    try:
        with zipfile.ZipFile(archive) as zip_file:
            planned = plan_members(zip_file.infolist(), archive, set_name)
            for info, parts in tqdm(planned, desc=f"unpacking {set_name}", disable=not progress):
                path = os.path.join(target, *parts)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                # copied as bytes: a member is always a plain file, never a link
                with zip_file.open(info) as source, open(path, "wb") as destination:
                    shutil.copyfileobj(source, destination)
    except zipfile.BadZipFile as error:
        raise ArchiveError(f"{archive}: not a readable zip archive ({error})") from None


def copy_unpacked(folder, set_name, target):
    """Copy the two subfolders of an already unpacked set `folder` into `target`."""
    present = [name for name in VALOR_FOLDERS if os.path.isdir(os.path.join(folder, name))]
    if not present:
        raise ArchiveError(f"{folder}: no {VALOR_FEATURES_FOLDER}/ or {VALOR_PSEUDO_LABELS_FOLDER}/ folder in it")
    for name in present:
        shutil.copytree(os.path.join(folder, name), os.path.join(target, name))


def stage_set(source, set_name, llp_root, progress=False):
    """A hidden sibling folder of <llp_root>/<set> holding the set from `source` (a zip or an
    unpacked folder); removed again if anything fails or the run is interrupted."""
    staging = tempfile.mkdtemp(dir=llp_root, prefix=f".{set_name}.partial-")
    try:
        if os.path.isdir(source):
            copy_unpacked(source, set_name, staging)
        else:
            unpack_archive(source, set_name, staging, progress)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def move_into_place(staging, destination):
    """Rename `staging` to `destination`; an existing `destination` is set aside first and removed
    after, so the path holds either the old or the new set, never a mix."""
    if not os.path.exists(destination):
        os.replace(staging, destination)
        return
    set_aside = tempfile.mkdtemp(dir=os.path.dirname(destination), prefix=f".{os.path.basename(destination)}.old-")
    os.replace(destination, os.path.join(set_aside, "old"))
    os.replace(staging, destination)
    shutil.rmtree(set_aside)


# --- the run -------------------------------------------------------------------------------------

def fetch_sets(llp_root, set_names, file_names, source_dir=None, revision=None, log=print, progress=False):
    """Put each set of `set_names` in place under `llp_root`, validated; returns the problems of
    the sets refused (each left as it was). A set in place and valid is left alone."""
    needed = []
    for name in set_names:
        destination = os.path.join(llp_root, name)
        if os.path.isdir(destination):
            found = check_set(destination, name, file_names, log, progress)
            if not found:
                log(f"{name}: present and valid, left alone")
                continue
            log(f"{name}: present with {len(found)} problem(s); fetching it again")
        needed.append(name)
    if not needed:
        return []
    if source_dir is not None:
        sources = find_sources(needed, source_dir)
    else:
        sources = {name: download_archive(name, revision) for name in needed}
    problems = []
    for name in needed:
        staging = stage_set(sources[name], name, llp_root, progress)
        found = check_set(staging, name, file_names, log, progress)
        if found:
            shutil.rmtree(staging)
            problems += found
            log(f"{name}: from {sources[name]}: {len(found)} problem(s), not installed")
            continue
        move_into_place(staging, os.path.join(llp_root, name))
        log(f"{name}: from {sources[name]}: installed in {os.path.join(llp_root, name)}")
    return problems


def default_llp_root():
    """$LLP_ROOT, as the shell scripts read it (scripts/llp_paths.sh), else the current folder,
    as main_DHHN.py's --llp_root."""
    return os.environ.get("LLP_ROOT") or "."


def get_args_parser():
    parser = argparse.ArgumentParser(
        description=f"Fetch VALOR's CLIP/CLAP features and segment pseudo-labels (Hugging Face dataset "
                    f"{VALOR_HF_REPO}) into <llp_root>/CLIP and <llp_root>/CLAP, validated.")
    parser.add_argument("--llp_root", default=default_llp_root(),
                        help="folder holding data/AVVP_*.csv; receives CLIP/ and CLAP/ (default: $LLP_ROOT, "
                             "else the current folder)")
    parser.add_argument("--from", dest="source_dir", default=None, metavar="DIR",
                        help="take CLIP.zip/CLAP.zip (or unpacked CLIP/, CLAP/ folders) from this local folder "
                             "instead of downloading them")
    parser.add_argument("--sets", nargs="+", choices=VALOR_SETS, default=list(VALOR_SETS),
                        help="which sets (default: both)")
    parser.add_argument("--revision", default=None,
                        help=f"branch, tag or commit of {VALOR_HF_REPO} to download (default: main)")
    parser.add_argument("--check_only", action="store_true",
                        help="only validate the sets already under --llp_root; fetch nothing")
    return parser


def main(args):
    """0 when the sets are in place and valid; 1 when an archive cannot be obtained; 2 when an
    archive or the layout is refused, or the LLP video list is missing (one line on stderr)."""
    set_names = list(dict.fromkeys(args.sets))
    progress = sys.stderr.isatty()
    try:
        file_names = read_video_ids(args.llp_root)
        print(f"LLP video list: {len(file_names)} videos")
        if args.check_only:
            problems = [problem for name in set_names
                        for problem in check_set(os.path.join(args.llp_root, name), name, file_names,
                                                 progress=progress)]
        else:
            problems = fetch_sets(args.llp_root, set_names, file_names, args.source_dir, args.revision,
                                  progress=progress)
        if problems:
            raise layout_error(problems, args.llp_root, fetched=not args.check_only)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 2)
    except OSError as error:  # an unwritable --llp_root, a full disk
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
