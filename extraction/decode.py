"""Reading a video file with PyAV: what it holds, its audio as LLP's extraction heard it, and its
frames on an 8-fps grid (docs/PROTOCOL.md §15).

Time 0 is the first video frame; the audio is shifted onto that clock. A file that cannot be read
raises a VideoInputError naming it; `video_problems` says what a readable one lacks.
"""
import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from extraction.windows import SEGMENT_SECONDS, whole_segments
from utils.errors import UserError

VIDEO_INSTALL = 'pip install -e ".[video]"'
AUDIO_RATE = 16000          # the original wrote the audio at 16 kHz (moviepy, fps=16000)
AUDIO_LAYOUT = "stereo"     # moviepy asked ffmpeg for 2 channels; VGGish then takes their mean
S16_SCALE = 32768.0         # VGGish's reader: int16 samples / 32768
# A frame interval further than this fraction from the median interval makes a stream variable
# frame rate (CFR streams repeat one interval exactly, up to a tick of their time base).
VFR_TOLERANCE = 0.5


class VideoInputError(UserError):
    """A video file that cannot be parsed as asked; the message names the file."""


def require_av():
    """The PyAV module, or a one-line error naming the install command."""
    try:
        import av
    except ImportError:
        raise UserError(f"video decoding needs PyAV: {VIDEO_INSTALL}") from None
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What a file holds, read from its packets (no decoding). Times in seconds from the first frame."""
    path: str
    duration: float            # end of the last video frame
    num_frames: int
    frame_rate: float          # median frames per second
    min_interval: float
    max_interval: float
    width: int
    height: int
    has_audio: bool
    audio_duration: float      # 0 without audio
    start_time: float          # the first frame's presentation time in the file

    @property
    def variable_frame_rate(self):
        median = 1.0 / self.frame_rate
        return (self.max_interval - median > VFR_TOLERANCE * median
                or median - self.min_interval > VFR_TOLERANCE * median)

    def to_dict(self):
        return {key: (round(value, 6) if isinstance(value, float) else value) for key, value in vars(self).items()}


def _open(av, path):
    if not os.path.isfile(path):
        raise VideoInputError(f"{path}: no such file")
    try:
        return av.open(path)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise VideoInputError(f"{path}: cannot be read as a video ({error})") from None


def _packet_times(container, streams):
    """([(sorted presentation times in seconds, duration of the last packet)] of each of `streams`,
    in their order, the time of the first packet the demuxer marks corrupt or None), from one
    demuxing pass over the file (no decoding)."""
    position = {stream.index: i for i, stream in enumerate(streams)}
    times = [[] for _ in streams]
    last_duration = [0.0 for _ in streams]
    corrupt_at = None
    for packet in container.demux(*streams):
        stamp = packet.pts if packet.pts is not None else packet.dts   # some AVI files stamp only dts
        if stamp is None:
            continue
        i = position[packet.stream.index]
        times[i].append(float(stamp * packet.time_base))
        last_duration[i] = float(packet.duration * packet.time_base) if packet.duration else 0.0
        if packet.is_corrupt and corrupt_at is None:
            corrupt_at = times[i][-1]
    return [(np.sort(np.array(found)), last) for found, last in zip(times, last_duration)], corrupt_at


def probe(path):
    """VideoInfo of `path`; raises VideoInputError for files that cannot be read or hold no video."""
    av = require_av()
    with _open(av, path) as container:
        if not container.streams.video:
            raise VideoInputError(f"{path}: no video stream")
        # read everything from the stream objects inside: they are freed with the container
        streams = [container.streams.video[0]] + list(container.streams.audio[:1])
        width, height = streams[0].codec_context.width, streams[0].codec_context.height
        try:
            packets, corrupt_at = _packet_times(container, streams)   # video first, then the audio if any
        except av.error.FFmpegError as error:
            raise VideoInputError(f"{path}: unreadable streams ({error})") from None
    if corrupt_at is not None:
        # a file cut short (an interrupted download or copy) whose index sits before the data opens
        # and demuxes up to the cut, and only its decoding fails, after the networks started
        raise VideoInputError(f"{path}: truncated or damaged (a cut packet at {corrupt_at:.2f} s); "
                              "copy or download it again")
    (times, last), has_audio, audio_end = packets[0], len(packets) > 1, 0.0
    if has_audio and len(packets[1][0]):
        audio_times, audio_last = packets[1]
        audio_end = float(audio_times[-1] + audio_last)
    if len(times) < 2:
        raise VideoInputError(f"{path}: {len(times)} video frame(s), too few to parse")
    intervals = np.diff(times)
    median = float(np.median(intervals))
    if not median > 0:
        raise VideoInputError(f"{path}: frame times do not advance")
    start = float(times[0])
    end = float(times[-1] + (last if last > 0 else median))
    return VideoInfo(path=path, duration=end - start, num_frames=len(times), frame_rate=1.0 / median,
                     min_interval=float(intervals.min()), max_interval=float(intervals.max()),
                     width=width, height=height, has_audio=has_audio,
                     audio_duration=max(0.0, audio_end - start) if has_audio else 0.0, start_time=start)


def read_audio(info, rate=AUDIO_RATE):
    """The whole audio track as LLP's extraction read it: (samples,) float64 mono at `rate` (16 kHz
    for VGGish, 48 kHz for CLAP) in [-1, 1], sample 0 at the first video frame (later audio starts
    with silence).

    The original let ffmpeg (through moviepy) resample to 16 kHz 2-channel 16-bit PCM and VGGish
    averaged the two channels; PyAV's resampler is the same libswresample. VALOR's CLAP path read
    48 kHz mono with librosa (soxr): the resampler differs (PROTOCOL.md §15).
    """
    av = require_av()
    if not info.has_audio:
        raise VideoInputError(f"{info.path}: no audio track")
    resampler = av.AudioResampler(format="s16", layout=AUDIO_LAYOUT, rate=rate)
    chunks, first_time = [], None
    with _open(av, info.path) as container:
        stream = container.streams.audio[0]
        # AAC decodes whole last packets: up to 1023 samples past the stream's end are padding
        length = int(round(float(stream.duration * stream.time_base) * rate)) if stream.duration else None
        try:
            for frame in container.decode(stream):
                if first_time is None and frame.time is not None:
                    first_time = float(frame.time)
                chunks += [out.to_ndarray() for out in resampler.resample(frame)]
            chunks += [out.to_ndarray() for out in resampler.resample(None)]
        except av.error.FFmpegError as error:
            raise VideoInputError(f"{info.path}: unreadable audio stream ({error})") from None
    if not chunks:
        raise VideoInputError(f"{info.path}: the audio track holds no samples")
    stereo = np.concatenate([chunk.reshape(-1) for chunk in chunks]).reshape(-1, 2)
    mono = stereo[:length].astype(np.float64).mean(axis=1) / S16_SCALE
    offset = int(round(((first_time or info.start_time) - info.start_time) * rate))
    if offset > 0:
        mono = np.concatenate([np.zeros(offset), mono])
    elif offset < 0:
        mono = mono[-offset:]
    return mono


def audio_window(mono, start_seconds, seconds, rate=AUDIO_RATE):
    """`seconds` of audio at `rate` from `start_seconds`, zero-padded past the end of the track."""
    begin, length = start_seconds * rate, seconds * rate
    piece = mono[begin:begin + length]
    return np.pad(piece, (0, length - len(piece)))


def grid_frames(info, grid_indices, fps, prepare):
    """{grid index k: prepare(PIL image)} for the frames shown at times k / fps (s from the first
    frame), read in one decoding pass (`iter_grid_frames`)."""
    return dict(iter_grid_frames(info, grid_indices, fps, prepare))


def iter_grid_frames(info, grid_indices, fps, prepare):
    """(grid index k, prepare(PIL image)) for the frames shown at times k / fps (s from the first
    frame), in increasing k, as one decoding pass reaches them.

    The frame shown at time t is the last one whose presentation time is at or before t (the
    last frame is held past the end), which is how ffmpeg's `-r` output option resampled the
    videos for the original extraction. `prepare` turns a PIL RGB image into what is kept (the
    networks' inputs), so that only the needed frames are held, never the whole video. It runs
    once per decoded frame: grid times showing the same frame share one (identical) object.
    """
    av = require_av()
    wanted = sorted(set(int(k) for k in grid_indices))
    if not wanted:
        return
    # a hair of tolerance: 8 fps grid times and 25/30 fps frame times meet exactly on paper
    times = [k / fps + 1e-6 for k in wanted]
    position, previous = 0, None
    prepared = None   # prepare(previous), made when a grid time first shows it

    def shown():
        nonlocal prepared
        if prepared is None:
            prepared = prepare(previous)
        return prepared

    with _open(av, info.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                t = float(frame.time) - info.start_time
                # every grid time before this frame shows the previous frame
                while position < len(wanted) and times[position] < t and previous is not None:
                    yield wanted[position], shown()
                    position += 1
                if position == len(wanted):
                    break
                previous, prepared = upright(frame.to_image(), frame.rotation), None
        except av.error.FFmpegError as error:
            raise VideoInputError(f"{info.path}: unreadable video frames ({error})") from None
    if previous is None:
        raise VideoInputError(f"{info.path}: no video frame could be decoded")
    for index in wanted[position:]:   # past the last frame: it is held
        yield index, shown()


def upright(image, rotation):
    """A decoded PIL image as it is shown: `rotation` is the stream's display rotation, degrees
    counterclockwise (a phone held upright records landscape frames and says 90 or -90). ffmpeg
    turned frames upright this way when the original scripts wrote their JPEGs (its autorotation,
    multiples of 90 degrees only)."""
    turns = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}
    turn = turns.get(int(round(rotation or 0)) % 360)
    return image.transpose(turn) if turn is not None else image


def video_problems(info, need_audio, allow_variable_frame_rate):
    """Every reason, one phrase each (the file is not named), why `info`'s video cannot be parsed
    as asked: no audio track, too short, a variable frame rate (unless allowed); [] when none."""
    problems = []
    if need_audio and not info.has_audio:
        problems.append("no audio track; the audio features (and parsing) need one")
    if not math.isfinite(info.duration):
        problems.append("the duration cannot be read")
    elif whole_segments(info.duration) < 1:
        problems.append(f"{info.duration:.2f} s is too short; at least one {SEGMENT_SECONDS}-s segment is needed")
    if info.variable_frame_rate and not allow_variable_frame_rate:
        problems.append(
            f"variable frame rate (frame intervals from {1000 * info.min_interval:.1f} ms to "
            f"{1000 * info.max_interval:.1f} ms); re-encode at a constant rate "
            "(e.g. ffmpeg -i IN -vf fps=25 OUT.mp4) or pass --allow_variable_frame_rate to sample it by time")
    return problems
