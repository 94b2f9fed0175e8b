"""Short synthetic videos with known content, for the feature-extraction tests.

During second s (t in [s, s+1)) the background is SECOND_COLOURS[s % 10], a white square crosses
the frame left to right once per second (`expected_square_x(t)`), and the audio is a sine of
TONE_HZ[s % 10] at amplitude 0.5 on every channel. Video is H.264 (libx264, yuv420p) or MPEG-4
Part 2 in an .mp4; audio is AAC-LC by default (the encoder's priming is trimmed on decode, so
sample 0 of the decoded track is sample 0 of the tone). The writers return a dict of what they
wrote, so a test compares decoded values with written ones instead of with constants of its own.

Imported by test modules as `from video_fixtures import ...`: pytest's default "prepend" import
mode puts tests/ (a directory without __init__.py) on sys.path. Not a test module itself.
"""
import heapq
from fractions import Fraction

import av
import numpy as np

# ten backgrounds far apart in RGB and from the white square; every channel stays inside
# [30, 225] so the RGB -> limited-range YUV -> RGB round trip never clips
SECOND_COLOURS = [
    (200, 40, 40),    # red
    (40, 160, 40),    # green
    (40, 60, 200),    # blue
    (210, 200, 40),   # yellow
    (160, 40, 170),   # purple
    (40, 180, 190),   # cyan
    (220, 120, 30),   # orange
    (30, 30, 30),     # near black
    (120, 120, 120),  # grey
    (120, 70, 30),    # brown
]
# the centres of VGGish log-mel bands 4, 9, 14, ..., 42 (64 HTK-mel bands over 125-7500 Hz,
# vggish_params.py / mel_features.py), rounded to integer Hz: each tone sits in the middle of its
# own band, at least three bands from the next tone. Integer Hz also means whole cycles in every
# second (the phase restarts at 0 at each second without a click) and an exact bin in a 1 s FFT
# at any integer sample rate.
TONE_HZ = [284, 475, 702, 914, 1159, 1442, 1767, 2141, 2572, 3069]
TONE_AMPLITUDE = 0.5
SQUARE_COLOUR = (255, 255, 255)
SQUARE_FRACTION = 4  # the square's side is a quarter of the frame height


def expected_colour(t):
    """RGB background at time t seconds."""
    return SECOND_COLOURS[int(np.floor(t)) % len(SECOND_COLOURS)]


def expected_tone(t):
    """Tone frequency in Hz at time t seconds."""
    return TONE_HZ[int(np.floor(t)) % len(TONE_HZ)]


def square_side(size):
    """Side in pixels of the moving square for a (width, height) frame; even, for 4:2:0."""
    return max(2, (size[1] // SQUARE_FRACTION) // 2 * 2)


def expected_square_x(t, size=(160, 120)):
    """Left edge in pixels of the square at time t: 0 at each whole second, sliding linearly to
    width - side just before the next."""
    travel = size[0] - square_side(size)
    return int(round((t - np.floor(t)) * travel))


def expected_square_y(size=(160, 120)):
    """Top edge in pixels of the square (it stays vertically centred)."""
    return (size[1] - square_side(size)) // 2


def render_frame(t, size=(160, 120)):
    """(height, width, 3) uint8 RGB frame at time t."""
    width, height = size
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = expected_colour(t)
    side = square_side(size)
    x, y = expected_square_x(t, size), expected_square_y(size)
    image[y:y + side, x:x + side] = SQUARE_COLOUR
    return image


def render_audio(seconds, sample_rate=44100, channels=2):
    """(channels, samples) float32 tone track of `seconds` (rounded to whole samples).

    Each second is drawn from the sample index within that second, so the phase is exact at
    every boundary however long the track; each tone's second is computed once.
    """
    total = int(round(seconds * sample_rate))
    index = np.arange(sample_rate) / sample_rate
    one_second = {hz: (TONE_AMPLITUDE * np.sin(2 * np.pi * hz * index)).astype(np.float32)
                  for hz in TONE_HZ}
    whole_seconds = -(-total // sample_rate)
    mono = np.concatenate([np.zeros(0, np.float32)] + [
        one_second[TONE_HZ[s % len(TONE_HZ)]] for s in range(whole_seconds)])
    return np.tile(mono[:total], (channels, 1))


def frame_times(seconds, fps, variable_frame_rate):
    """Presentation times in ticks of a time base, and that time base.

    Constant rate: ticks of 1/fps, one frame per tick. Variable rate: ticks of 1/(2 fps), gaps
    alternating 3 and 1 ticks (1.5/fps and 0.5/fps: 60 ms and 20 ms at 25 fps), so the mean rate
    stays near fps, with one freeze of a whole second (one frame held) from the middle of the
    video on when it is at least 3 s long. Either way the last frame starts one nominal frame
    before the end, because the mp4 muxer gives the last sample the nominal 1/fps duration; so
    the stream lasts exactly `seconds` (rounded to ticks).
    """
    if not variable_frame_rate:
        count = int(round(seconds * fps))
        if count < 1:
            raise ValueError(f"a video needs at least one frame: {seconds} s at {fps} fps")
        return list(range(count)), Fraction(1, fps)
    last = int(round(seconds * 2 * fps)) - 2
    if last < 0:
        raise ValueError(f"a video needs at least one frame: {seconds} s at {fps} fps")
    freeze_from = last // 2 if seconds >= 3 else None
    ticks, tick, gaps = [], 0, (1, 3)
    while tick < last:
        ticks.append(tick)
        if freeze_from is not None and tick >= freeze_from:
            tick, freeze_from = tick + 2 * fps, None
        else:
            tick += gaps[len(ticks) % 2]
    return ticks + [last], Fraction(1, 2 * fps)


def _add_video_stream(container, codec, fps, size, time_base):
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = time_base
    if codec == "libx264":
        # fast, and near-lossless on flat colours; keeps B-frames (pts != dts), as real files have
        stream.options = {"preset": "ultrafast", "crf": "18"}
    else:
        stream.bit_rate = 2_000_000
    return stream


def _video_frames(ticks, time_base, size):
    """(time, frame) per frame, in display order."""
    for tick in ticks:
        t = float(tick * time_base)
        frame = av.VideoFrame.from_ndarray(render_frame(t, size), format="rgb24")
        frame.pts, frame.time_base = tick, time_base
        yield t, frame


def _add_audio_stream(container, codec, sample_rate, channels):
    stream = container.add_stream(codec, rate=sample_rate)
    stream.layout = "mono" if channels == 1 else "stereo"
    if codec != "pcm_s16le":
        stream.bit_rate = 96_000  # plenty for pure tones; the encoder time grows with it
    return stream


def _audio_frames(stream, samples, sample_rate):
    """(time, frame) per encoder frame of the (channels, samples) float track."""
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    packed = stream.codec_context.format.name in ("s16", "flt")
    if stream.codec_context.format.name.startswith("s16"):
        samples = np.round(samples * 32767).astype(np.int16)
    chunk = stream.codec_context.frame_size or 1024
    for start in range(0, samples.shape[1], chunk):
        block = samples[:, start:start + chunk]
        # packed formats take one row of interleaved samples
        block = block.T.reshape(1, -1) if packed else np.ascontiguousarray(block)
        frame = av.AudioFrame.from_ndarray(
            block, format=stream.codec_context.format.name, layout=layout)
        frame.sample_rate, frame.pts = sample_rate, start
        frame.time_base = Fraction(1, sample_rate)
        yield start / sample_rate, frame


def _tag(stream, frames):
    """(time, frame, stream) for each (time, frame)."""
    for t, frame in frames:
        yield t, frame, stream


def write_test_video(path, seconds, fps=25, size=(160, 120), audio=True, sample_rate=44100,
                     channels=2, audio_seconds=None, variable_frame_rate=False, codec="libx264",
                     audio_codec="aac", faststart=False):
    """Write an .mp4 of `seconds` with the known content; return a dict describing it.

    codec: "libx264" (H.264) or "mpeg4"; audio_codec: "aac" (AAC-LC, what real videos carry;
    about half the writing time), "pcm_s16le" (lossless, near-free to encode) or "mp2" (decodes
    as mp3float; its stream is ~6 ms short). faststart puts the index (moov) before the data.
    The video stream lasts exactly `seconds`, rounded to whole frames.

    The dict: path, duration (video seconds), fps (nominal), variable_frame_rate, frame_count,
    frame_pts (seconds, per frame, in display order), frame_pts_ticks and time_base (exact),
    size, codec, has_audio, audio_duration (seconds or None), audio_samples, sample_rate,
    channels, audio_codec.
    """
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"yuv420p needs even sizes, got {size}")
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    audio_seconds = seconds if audio_seconds is None else audio_seconds
    samples_written = int(round(audio_seconds * sample_rate)) if audio else 0
    ticks, time_base = frame_times(seconds, fps, variable_frame_rate)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", format="mp4", options=options) as container:
        video = _add_video_stream(container, codec, fps, size, time_base)
        streams = [(video, _video_frames(ticks, time_base, size))]
        if audio:
            audio_stream = _add_audio_stream(container, audio_codec, sample_rate, channels)
            samples = render_audio(audio_seconds, sample_rate, channels)
            streams.append((audio_stream, _audio_frames(audio_stream, samples, sample_rate)))
        # hand the muxer frames in time order, so the file interleaves the streams
        tagged = [_tag(stream, frames) for stream, frames in streams]
        for _, frame, stream in heapq.merge(*tagged, key=lambda item: item[0]):
            container.mux(stream.encode(frame))
        for stream, _ in streams:
            container.mux(stream.encode(None))
    return dict(
        path=str(path), duration=float(ticks[-1] * time_base) + 1 / fps, fps=fps,
        variable_frame_rate=variable_frame_rate,
        frame_count=len(ticks), frame_pts=[float(tick * time_base) for tick in ticks],
        frame_pts_ticks=ticks, time_base=time_base, size=tuple(size), codec=codec,
        # an audio track with no samples is dropped by the mp4 muxer: no audio stream at all
        has_audio=samples_written > 0, audio_samples=samples_written,
        audio_duration=samples_written / sample_rate if samples_written else None,
        sample_rate=sample_rate if samples_written else None,
        channels=channels if samples_written else 0,
        audio_codec=audio_codec if samples_written else None)


def write_corrupt_file(path):
    """Bytes that are no video, under whatever name `path` has (an .mp4 one, usually)."""
    with open(path, "wb") as handle:
        handle.write(b"not a video" * 100)
    return str(path)


def write_truncated_video(path, seconds=3, keep_fraction=0.3, faststart=True, **video_options):
    """A valid test video cut to its first `keep_fraction` of bytes; returns the full video's
    description plus truncated_bytes and full_bytes.

    faststart=True (the index before the data): the file opens and claims the full duration,
    but decoding ends early: silently short, or with av.error.InvalidDataError from the video
    decoder, depending on where the cut falls in a packet. faststart=False: the index at the end
    is lost and av.open raises av.error.InvalidDataError, like write_corrupt_file.
    """
    info = write_test_video(path, seconds, faststart=faststart, **video_options)
    with open(path, "rb") as handle:
        data = handle.read()
    keep = int(len(data) * keep_fraction)
    with open(path, "wb") as handle:
        handle.write(data[:keep])
    return dict(info, truncated_bytes=keep, full_bytes=len(data))


def dominant_frequency(samples, sample_rate):
    """Frequency in Hz of the largest FFT peak of a 1-D signal (1/len-seconds resolution)."""
    samples = np.asarray(samples, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / sample_rate)[np.argmax(spectrum)])
