"""The synthetic test videos hold what video_fixtures says they hold, read back with PyAV."""
import numpy as np
import pytest

pytest.importorskip("av", reason='the video tests need PyAV: pip install -e ".[video]"')
import av  # noqa: E402

from video_fixtures import (
    SECOND_COLOURS,
    TONE_AMPLITUDE,
    TONE_HZ,
    dominant_frequency,
    expected_colour,
    expected_square_x,
    expected_square_y,
    expected_tone,
    square_side,
    write_corrupt_file,
    write_test_video,
    write_truncated_video,
)

# RGB -> yuv420p -> H.264 -> RGB on a flat background: a few levels; we allow ten
COLOUR_TOLERANCE = 10
FREQUENCY_TOLERANCE_HZ = 2


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Written once for the module: {name: description}."""
    folder = tmp_path_factory.mktemp("videos")
    return {
        "3s": write_test_video(folder / "3s.mp4", 3),
        "10s": write_test_video(folder / "10s.mp4", 10),
        "25s": write_test_video(folder / "25s.mp4", 25),
        "silent": write_test_video(folder / "silent.mp4", 3, audio=False),
        "vfr": write_test_video(folder / "vfr.mp4", 6, variable_frame_rate=True),
        "short_audio": write_test_video(folder / "short_audio.mp4", 3, audio_seconds=2),
        "long_audio": write_test_video(folder / "long_audio.mp4", 3, audio_seconds=4.5),
    }


def frame_near(path, t):
    """(time, (H, W, 3) uint8 RGB) of the decoded frame whose time is nearest t."""
    with av.open(str(path)) as container:
        frame = min(container.decode(video=0), key=lambda frame: abs(frame.time - t))
        return frame.time, frame.to_ndarray(format="rgb24")


def decode_audio(path):
    """(channels, samples) float32 at the stream's own rate, trimmed to the stream's duration
    (the last AAC frame is decoded whole, up to 1023 samples past the end)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = np.concatenate([frame.to_ndarray() for frame in container.decode(stream)],
                                 axis=1)
        kept = int(round(stream.duration * stream.time_base * stream.sample_rate))
        return samples[:, :kept], stream.sample_rate


@pytest.mark.parametrize("name, seconds", [("3s", 3), ("10s", 10), ("25s", 25)])
def test_durations(videos, name, seconds):
    info = videos[name]
    with av.open(info["path"]) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert container.duration / av.time_base == pytest.approx(seconds)
        assert float(video.duration * video.time_base) == pytest.approx(seconds)
        assert float(audio.duration * audio.time_base) == pytest.approx(seconds)
        assert video.average_rate == video.guessed_rate == 25
        times = [frame.time for frame in container.decode(video)]
    assert len(times) == info["frame_count"] == seconds * 25
    assert times == pytest.approx(info["frame_pts"])
    assert times[-1] == pytest.approx(seconds - 1 / 25)


def test_every_second_has_its_colour_and_square(videos):
    size = videos["10s"]["size"]
    top, side = expected_square_y(size), square_side(size)
    for second in range(10):
        t, image = frame_near(videos["10s"]["path"], second + 0.5)
        background = np.median(image[:top - 2].reshape(-1, 3), axis=0)
        assert np.abs(background - expected_colour(t)).max() <= COLOUR_TOLERANCE
        assert expected_colour(t) == SECOND_COLOURS[second]
        # the square is the run of near-white pixels across its middle row
        row = image[top + side // 2].min(axis=1)
        white = np.flatnonzero(row > 200)
        assert abs(int(white[0]) - expected_square_x(t, size)) <= 2
        assert len(white) == pytest.approx(side, abs=2)


def test_frame_at_4_5_seconds_has_colour_4(videos):
    # 4.5 s falls between frames 4.48 and 4.52; both belong to second 4
    t, image = frame_near(videos["10s"]["path"], 4.5)
    assert 4 <= t < 5
    corner = image[:10, :10].reshape(-1, 3).astype(int)
    assert np.abs(corner - SECOND_COLOURS[4]).max() <= COLOUR_TOLERANCE


def test_every_second_has_its_tone(videos):
    samples, rate = decode_audio(videos["10s"]["path"])
    assert samples.shape == (2, 10 * rate)
    np.testing.assert_allclose(samples[0], samples[1], atol=0.05)
    for second in range(10):
        window = samples[0, second * rate:(second + 1) * rate]
        assert dominant_frequency(window, rate) == pytest.approx(
            TONE_HZ[second], abs=FREQUENCY_TOLERANCE_HZ)
        assert expected_tone(second + 0.5) == TONE_HZ[second]
        # a sine of amplitude A has RMS A / sqrt(2)
        assert np.sqrt(np.mean(window ** 2)) == pytest.approx(TONE_AMPLITUDE / np.sqrt(2),
                                                              rel=0.05)


def test_resampled_16k_stereo_s16_keeps_tone_and_length(videos):
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=16000)
    with av.open(videos["3s"]["path"]) as container:
        stream = container.streams.audio[0]
        chunks = [out.to_ndarray() for frame in container.decode(stream)
                  for out in resampler.resample(frame)]
        duration = float(stream.duration * stream.time_base)
    chunks += [out.to_ndarray() for out in resampler.resample(None)]  # flush
    # packed s16: each chunk is (1, 2 * samples), left and right interleaved
    assert all(chunk.dtype == np.int16 and chunk.shape[0] == 1 for chunk in chunks)
    stereo = np.concatenate(chunks, axis=1).reshape(-1, 2).T[:, :int(duration * 16000)]
    assert stereo.shape == (2, 3 * 16000)
    window = stereo[0, 2 * 16000:3 * 16000] / 32768
    assert dominant_frequency(window, 16000) == pytest.approx(TONE_HZ[2],
                                                              abs=FREQUENCY_TOLERANCE_HZ)


def test_no_audio_stream_when_audio_false(videos):
    info = videos["silent"]
    assert not info["has_audio"]
    with av.open(info["path"]) as container:
        assert len(container.streams.audio) == 0
        assert container.duration / av.time_base == pytest.approx(3)


@pytest.mark.parametrize("name, audio_seconds", [("short_audio", 2), ("long_audio", 4.5)])
def test_audio_length_differs_from_video(videos, name, audio_seconds):
    info = videos[name]
    assert info["audio_duration"] == audio_seconds
    with av.open(info["path"]) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert float(video.duration * video.time_base) == pytest.approx(3)
        assert float(audio.duration * audio.time_base) == pytest.approx(audio_seconds)
        # the container reports the longer of the two
        assert container.duration / av.time_base == pytest.approx(max(3, audio_seconds))


def test_variable_frame_rate_is_real(videos):
    info = videos["vfr"]
    with av.open(info["path"]) as container:
        video = container.streams.video[0]
        assert float(video.duration * video.time_base) == pytest.approx(6)
        # the mean rate and the rate every timestamp fits disagree only for a VFR stream
        assert video.average_rate != video.guessed_rate
        times = [frame.time for frame in container.decode(video)]
    assert times == pytest.approx(info["frame_pts"])
    gaps = np.round(np.diff(times), 4)
    assert {0.02, 0.06, 1.0} <= set(gaps.tolist())
    assert len(times) == info["frame_count"] < 6 * 25


def test_corrupt_file_does_not_open(tmp_path):
    path = write_corrupt_file(tmp_path / "corrupt.mp4")
    with pytest.raises(av.error.InvalidDataError):
        av.open(path)


def test_truncated_video_without_index_does_not_open(tmp_path):
    info = write_truncated_video(tmp_path / "cut.mp4", faststart=False)
    assert info["truncated_bytes"] < info["full_bytes"]
    with pytest.raises(av.error.InvalidDataError):
        av.open(info["path"])


def test_truncated_video_with_index_opens_but_ends_early(tmp_path):
    info = write_truncated_video(tmp_path / "cut.mp4", seconds=3)
    decoded = 0
    with av.open(info["path"]) as container:
        # the index still promises the whole video
        assert container.duration / av.time_base == pytest.approx(3)
        try:
            for _ in container.decode(video=0):
                decoded += 1
        except av.error.InvalidDataError:
            pass  # raised when the cut splits a packet; otherwise decoding just stops early
    assert 0 < decoded < info["frame_count"]
