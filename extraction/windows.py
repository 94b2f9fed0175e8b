"""Videos of any length as 10-s windows of 1-s segments, and the windows' segment outputs as one
timeline again (docs/PROTOCOL.md §15).

LLP models read 10 segments of 1 s. A video of n whole seconds is cut into windows starting at
0, 10, 20, ...; when n is not a multiple of 10 the last window ends at the video's end, so it
overlaps the one before and holds only real content. Each second of the timeline is taken from
the first window that covers it, so a stitched value is exactly the value one window gave.
A video shorter than 10 s has one window whose last segments lie past the end (padded: silence,
and the last frame held); they are parsed but never reported. A tail shorter than one segment
is not parsed.
"""
import math
from dataclasses import dataclass

import numpy as np

from avvp_data.llp import NUM_SEGMENTS

SEGMENT_SECONDS = 1
WINDOW_SECONDS = NUM_SEGMENTS * SEGMENT_SECONDS
# Containers round the ends of their streams: LLP's 10-s clips measure 9.96 s to 10.04 s. A
# segment whose last 0.1 s is missing still counts as whole (its last 0.1 s is padded).
DURATION_TOLERANCE = 0.1


class VideoTooShort(ValueError):
    """A video without one whole segment; the caller names the file."""


@dataclass(frozen=True)
class Window:
    """10 segments of a video from second `start`; the timeline takes its segments
    `keep_from` .. `keep_to` - 1 (window positions); `padded` of its segments lie past the end."""
    start: int
    keep_from: int
    keep_to: int
    padded: int

    @property
    def kept_seconds(self):
        """(first, last + 1) seconds of the video this window reports."""
        return self.start + self.keep_from, self.start + self.keep_to

    def to_dict(self):
        return {"start": self.start, "keep_from": self.keep_from, "keep_to": self.keep_to, "padded": self.padded}


def whole_segments(duration):
    """How many 1-s segments of a video of `duration` seconds are parsed."""
    return int(math.floor(duration / SEGMENT_SECONDS + DURATION_TOLERANCE))


def plan_windows(duration):
    """The windows of a video of `duration` seconds, in order; raises VideoTooShort below one segment."""
    num_segments = whole_segments(duration)
    if num_segments < 1:
        raise VideoTooShort(f"{duration:.2f} s is shorter than one {SEGMENT_SECONDS}-s segment")
    if num_segments <= NUM_SEGMENTS:
        return [Window(0, 0, num_segments, NUM_SEGMENTS - num_segments)]
    windows = [Window(start, 0, NUM_SEGMENTS, 0) for start in range(0, num_segments - NUM_SEGMENTS + 1, NUM_SEGMENTS)]
    covered = windows[-1].start + NUM_SEGMENTS
    if covered < num_segments:   # end-aligned: real content only, the overlap is reported by the earlier window
        start = num_segments - NUM_SEGMENTS
        windows.append(Window(start, covered - start, NUM_SEGMENTS, 0))
    return windows


def describe_plan(duration, windows):
    """One line saying how a video was cut: windows, overlap, padding, the unparsed tail."""
    num_segments = windows[-1].kept_seconds[1]
    parts = [f"{duration:.2f} s -> {num_segments} segment(s) in {len(windows)} window(s)"]
    last = windows[-1]
    if last.padded:
        parts.append(f"the window is padded by {last.padded} s (silence, last frame held), not reported")
    elif last.keep_from:
        parts.append(f"the last window starts at {last.start} s and overlaps the one before by {last.keep_from} s")
    tail = duration - num_segments * SEGMENT_SECONDS
    if tail > DURATION_TOLERANCE:
        parts.append(f"the last {tail:.2f} s (under one segment) is not parsed")
    return "; ".join(parts)


def stitch(per_window, windows, axis=0):
    """One timeline from per-window values: per_window (W, ..., 10, ...) with the 10 segments on
    `axis` (counted after the window axis); returns (..., n, ...) with n = the video's segments."""
    per_window = np.asarray(per_window)
    if per_window.shape[0] != len(windows):
        raise ValueError(f"{per_window.shape[0]} windows of values for {len(windows)} windows")
    parts = [np.take(values, np.arange(window.keep_from, window.keep_to), axis=axis)
             for values, window in zip(per_window, windows)]
    return np.concatenate(parts, axis=axis)
