"""What a feature folder says about how its files were made (docs/PROTOCOL.md §15).

Each kind's folder holds `extraction.json`: the network, its weight file and digest (or that the
weights were random), and every preprocessing setting. A folder made with other settings is
never added to, so one folder never mixes two recipes. The extraction root holds `videos.jsonl`,
one line per finished video (source file, size and time, duration, windows, feature ids),
appended after all of its files are written: a line means the video is complete, and an
interrupted run resumes after the last one.
"""
import json
import os

from utils.errors import UsageError
from utils.io import atomic_write_json

RECORD_FILE = "extraction.json"
VIDEOS_FILE = "videos.jsonl"
# what must agree for two runs to share a folder
COMPARED_KEYS = ("kind", "network", "weights", "random_weights", "settings")


def read_record(folder):
    """The extraction record of a feature folder, or None when it has none (e.g. downloaded features)."""
    path = os.path.join(folder, RECORD_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise UsageError(f"{path}: unreadable extraction record ({error})") from None


def check_folder(folder, record):
    """The folder's extraction record, None when it has none; UsageError when it says the features
    there were made otherwise than `record`. Reads only."""
    existing = read_record(folder)
    if existing is not None:
        differing = [key for key in COMPARED_KEYS if existing.get(key) != record.get(key)]
        if differing:
            raise UsageError(f"{folder} holds features made otherwise ({', '.join(differing)} differ, see "
                             f"{os.path.join(folder, RECORD_FILE)}); extract into another folder or remove it")
    return existing


def claim_folder(folder, record):
    """Write `record` as the folder's extraction record, or check that the one there agrees."""
    if check_folder(folder, record) is None:
        os.makedirs(folder, exist_ok=True)
        atomic_write_json(record, os.path.join(folder, RECORD_FILE))


def append_video(root, entry):
    """Record one finished video; one short line, appended and flushed to disk."""
    path = os.path.join(root, VIDEOS_FILE)
    with open(path, "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_videos(root):
    """{video name: its latest entry} of `root`'s videos.jsonl; a line cut by an interruption is skipped."""
    path = os.path.join(root, VIDEOS_FILE)
    entries = {}
    if not os.path.isfile(path):
        return entries
    with open(path) as f:
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            entries[entry["video"]] = entry
    return entries


def random_weight_folders(folders):
    """The folders among `folders` whose features were made with random weights (a smoke test)."""
    found = []
    for folder in folders:
        record = read_record(folder) if folder and os.path.isdir(folder) else None
        if record is not None and record.get("random_weights"):
            found.append(folder)
    return found


def refuse_random_weight_features(folders, allowed, flag="--allow_random_weight_features"):
    """Stop unless asked otherwise when features of `folders` come from random weights: what a
    model learns or reports on them says nothing about the videos."""
    found = random_weight_folders(folders)
    if found and not allowed:
        raise UsageError(f"{', '.join(found)}: features made with random weights (a smoke test of the extraction); "
                         f"they carry no information about the videos. Pass {flag} to use them anyway")
    return found


def differences_from_training(training_folders, current):
    """What differs between the features a model was trained on and those about to be made.

    training_folders: kind -> the folder the model was trained on (from its checkpoint's args);
    current: kind -> the record of the extraction now. Folders without a record (e.g. the
    downloaded LLP features) cannot be compared and give nothing. Returns ["kind: what differs"].
    """
    found = []
    for kind, folder in training_folders.items():
        record = read_record(folder) if folder and os.path.isdir(folder) else None
        if record is None or kind not in current:
            continue
        now = current[kind]
        if record.get("network") != now.get("network"):
            found.append(f"{kind}: network {record.get('network')} in training, {now.get('network')} now")
        before, after = record.get("settings", {}), now.get("settings", {})
        found += [f"{kind}: {key} was '{before.get(key)}' in training, '{after.get(key)}' now"
                  for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
    return found
