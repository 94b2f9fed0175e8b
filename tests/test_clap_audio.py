"""VALOR's CLAP audio path (extraction/clap_mel.py, extraction/clap_audio.py): the preprocessing and
fusion mel against torchaudio's, HTSAT-tiny's key layout and size against laion_clap's, and its
feature maps against laion_clap + VALOR's clap_utils on seeded random weights (golden numbers in
tests/golden/clap_reference.json; neither package is imported here)."""
import hashlib
import json
import math
import os

import numpy as np
import pytest
import torch

from extraction import clap_audio, clap_mel
from extraction.clap_audio import HTSATAudioEncoder, htsat_tiny, load_clap_audio_weights

# How the golden file was made, once, in a throw-away environment (its "reference" entry names the
# versions): laion_clap.CLAP_Module(enable_fusion=True, amodel="HTSAT-tiny") built offline (the
# tokenizers and RoBERTa it fetches from the hub replaced by local stand-ins, which touch only
# text keys), its own load_ckpt(ckpt=...) on a file {"epoch", "name", "state_dict": {"module." +
# key: ...}} holding seeded_audio_weights(..., seed=0) for the keys this encoder uses; then
# VALOR's index picking and int16 round trip on golden_waveform(), VALOR's
# clap_utils.get_audio_features(..., 480000, "fusion", "repeatpad", audio_cfg) and
# My_CLAP.get_audio_feature_maps, plus laion's own audio_branch forward for the embedding. The
# small entry: laion's HTSAT_Swin_Transformer with SMALL (fusion aff_2d), seed 1, on the first
# SMALL_FRAMES mel frames, through the same VALOR code. "checkpoint_layout" is that CLAP model's
# state-dict keys and shapes (transformers 4.30.2, text sizes of roberta-base).
GOLDEN_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "clap_reference.json")
with open(GOLDEN_PATH) as golden_file:
    GOLDEN = json.load(golden_file)

# HTSAT-tiny's audio branch up to the final LayerNorm (bn0, patch embedding, 4 stages, norm), as
# laion_clap 1.1.4 counts it; its whole audio branch, with the unused heads, fusion and STFT, has 31,339,783
HTSAT_TINY_PARAMETERS = 27534488
# a configuration small enough for every run: 128 x 128 image, 8 channels, 4 stages, window 4
SMALL = dict(spec_size=128, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=4)
SMALL_FRAMES = 200


def seeded_audio_weights(shapes, seed):
    """{key: tensor} for {key: shape}, drawn in sorted key order from int8 levels of numpy's
    RandomState (the same on every machine; the golden outputs were computed with this draw):
    BatchNorm statistics on the dB scale of the mel, norms near 1, weights of std 1/sqrt(fan_in)."""
    rng = np.random.RandomState(seed)
    state = {}
    for key in sorted(shapes):
        shape = shapes[key]
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.long)
            continue
        unit = rng.randint(-127, 128, size=shape, dtype=np.int8).astype(np.float32) / np.float32(127)
        is_norm = key.startswith("bn0") or "norm" in key
        if key.endswith("running_mean"):
            value = -30 + 20 * unit
        elif key.endswith("running_var"):
            value = 60 + 40 * unit
        elif is_norm and key.endswith("weight"):
            value = 1 + 0.2 * unit
        elif is_norm and key.endswith("bias"):
            value = 0.1 * unit
        elif key.endswith("relative_position_bias_table"):
            value = 0.5 * unit
        elif key.endswith("bias"):
            value = 0.05 * unit
        else:
            value = unit * np.float32(math.sqrt(3.0 / int(np.prod(shape[1:]))))
        state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    return state


def shapes_of(model):
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def golden_waveform():
    """(481237,) float32 at 48 kHz, a little over 10 s so that index picking drops samples: a chirp
    100 Hz -> 11.9 kHz, a 3 kHz tone for the first 5 s, noise, and a clipped half second at 6 s."""
    count = 481237
    t = np.arange(count) / 48000.0
    rng = np.random.RandomState(2024)
    wave = 0.4 * np.sin(2 * np.pi * (100 * t + 590 * t ** 2)) + 0.2 * np.sin(2 * np.pi * 3000 * t) * (t < 5)
    wave = wave + 0.05 * rng.standard_normal(count)
    wave[6 * 48000:6 * 48000 + 24000] *= 3.0
    return wave.astype(np.float32)


def checkpoint_like_the_release(audio_state, model):
    """A training checkpoint in 630k-fusion-best.pt's layout: every key of laion's CLAP state dict
    under "module.", `audio_state` for the audio keys the encoder uses, the model's own geometry
    buffers, and stand-ins (zeros that take no memory) for the text branch, projections and unused
    audio parts."""
    buffers = dict(model.named_buffers())
    state = {}
    for key, shape in GOLDEN["checkpoint_layout"].items():
        name = key[len("audio_branch."):] if key.startswith("audio_branch.") else None
        if name in audio_state:
            state["module." + key] = audio_state[name]
        elif name in buffers:
            state["module." + key] = buffers[name].clone()
        else:
            state["module." + key] = torch.zeros(()).expand(torch.Size(shape))
    return {"epoch": 45, "name": "seeded", "state_dict": state}


@pytest.fixture(scope="module")
def prepared():
    return clap_mel.prepare_clip(golden_waveform())


@pytest.fixture(scope="module")
def golden_mel(prepared):
    return clap_mel.fusion_mel(prepared)


@pytest.fixture(scope="module")
def tiny():
    return htsat_tiny().eval()


@pytest.fixture(scope="module")
def small_model():
    model = HTSATAudioEncoder(**SMALL).eval()
    model.load_state_dict(seeded_audio_weights(shapes_of(model), seed=1))
    return model


# ---------------------------------------------------------------- preprocessing

def test_index_picking_keeps_a_10s_clip_and_spreads_the_rest():
    exact = np.arange(480000, dtype=np.float32)
    assert np.array_equal(clap_mel.pick_clip_samples(exact), exact)
    longer = clap_mel.pick_clip_samples(np.arange(480001))
    assert longer.shape == (480000,) and longer[0] == 0 and longer[-1] == 480000
    assert np.count_nonzero(np.diff(longer) == 2) == 1                # one sample dropped, near the middle
    shorter = clap_mel.pick_clip_samples(np.arange(240000))
    assert shorter.shape == (480000,) and np.count_nonzero(np.diff(shorter) == 0) == 240000
    with pytest.raises(ValueError, match="mono"):
        clap_mel.pick_clip_samples(np.zeros((480000, 2)))
    with pytest.raises(ValueError, match="mono"):
        clap_mel.pick_clip_samples(np.zeros(0))


def test_int16_round_trip_clips_and_truncates_towards_zero():
    samples = np.array([1.5, -2.0, 0.5, -0.5, 2.7 / 32767, -2.7 / 32767, 0.0])
    levels = np.array([32767, -32767, 16383, -16383, 2, -2, 0])          # 16383.5 and 2.7 truncate
    result = clap_mel.int16_round_trip(samples)
    assert result.dtype == np.float32
    assert np.array_equal(result, (levels / 32767.0).astype(np.float32))


def test_prepare_clip_refuses_other_rates():
    with pytest.raises(ValueError, match="48000 Hz"):
        clap_mel.prepare_clip(np.zeros(441000), sample_rate=44100)


def test_prepared_clip_matches_the_reference(prepared):
    expected = GOLDEN["prepared"]
    assert prepared.shape == (480000,) and prepared.dtype == np.float32
    assert [int((prepared == 1).sum()), int((prepared == -1).sum())] == [expected["clipped_high"],
                                                                          expected["clipped_low"]]
    assert {str(index): float(prepared[int(index)]) for index in expected["entries"]} == expected["entries"]
    assert float(prepared.astype(np.float64).sum()) == pytest.approx(expected["sum"], rel=1e-9)


# ---------------------------------------------------------------- fusion mel

def test_filterbank_triangles_on_the_htk_scale():
    weights = clap_mel.mel_filterbank().numpy()
    assert weights.shape == (513, 64) and weights.dtype == np.float32
    hz_per_bin = 24000 / 512
    # nothing below 50 Hz (bins 0 and 1 at 0 and 46.9 Hz) or above 14 kHz (bin 299 = 14016 Hz)
    assert np.all(weights[:2] == 0) and np.all(weights[299:] == 0) and np.any(weights[298] > 0)
    mel_low, mel_high = (2595 * math.log10(1 + hz / 700) for hz in (50.0, 14000.0))
    edges = [700 * (10 ** ((mel_low + i * (mel_high - mel_low) / 65) / 2595) - 1) for i in range(66)]
    band = 40
    bin_index = int(edges[band + 1] / hz_per_bin)               # just below the peak of band 40
    rising = (bin_index * hz_per_bin - edges[band]) / (edges[band + 1] - edges[band])
    assert 0 < rising < 1
    assert weights[bin_index, band] == pytest.approx(rising, abs=1e-5)
    # triangles in Hz: the bin's weight in the band below is its distance to that band's upper edge
    assert weights[bin_index, band - 1] == pytest.approx(
        (edges[band + 1] - bin_index * hz_per_bin) / (edges[band + 1] - edges[band]), abs=1e-5)
    assert weights.max() <= 1.0                                 # peaks of 1: no area normalisation


def test_silence_is_the_power_floor_and_a_clip_has_1001_frames():
    mel = clap_mel.fusion_mel(np.zeros(480000, dtype=np.float32))
    assert mel.shape == (1001, 64) and mel.dtype == torch.float32
    assert torch.all(mel == -100.0)                             # 10 log10(1e-10)
    with pytest.raises(ValueError, match="mono"):
        clap_mel.fusion_mel(np.zeros(512))


@pytest.mark.parametrize("band", [10, 35, 60])
def test_a_sine_at_a_band_centre_peaks_in_that_band(band):
    mel_low, mel_high = (2595 * math.log10(1 + hz / 700) for hz in (50.0, 14000.0))
    centre = 700 * (10 ** ((mel_low + (band + 1) * (mel_high - mel_low) / 65) / 2595) - 1)
    t = np.arange(48000) / 48000
    mel = clap_mel.fusion_mel(0.5 * np.sin(2 * np.pi * centre * t))
    assert torch.all(mel[2:-2].argmax(dim=1) == band)


def test_fusion_mel_matches_torchaudio(golden_mel):
    # bit for bit on the machine that made the golden file (torch 2.13 here, torchaudio 2.9.1
    # there); 1e-4 dB leaves room for another FFT backend
    expected = GOLDEN["mel"]
    mel = golden_mel.numpy().astype(np.float64)
    assert list(mel.shape) == expected["shape"]
    assert float(mel.sum()) == pytest.approx(expected["sum"], rel=1e-7)
    np.testing.assert_allclose(mel.mean(axis=0), expected["bin_means"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(mel.mean(axis=1), expected["frame_means"], rtol=0, atol=1e-4)
    for row, col, value in expected["entries"]:
        assert mel[row, col] == pytest.approx(value, abs=1e-4), (row, col)


# ---------------------------------------------------------------- the network's layout

def test_htsat_tiny_has_laions_audio_keys_and_size(tiny):
    layout = GOLDEN["checkpoint_layout"]
    audio = {key[len("audio_branch."):]: tuple(shape) for key, shape in layout.items()
             if key.startswith("audio_branch.")}
    fixed = GOLDEN["fixed_buffers"]["tiny"]
    unused = {key for key in audio if key.startswith(clap_audio.UNUSED_AUDIO_PARTS)}
    assert len(unused) == 37 and len(fixed) == 17
    assert shapes_of(tiny) == {key: shape for key, shape in audio.items() if key not in unused and key not in fixed}
    assert sum(p.numel() for p in tiny.parameters()) == HTSAT_TINY_PARAMETERS == GOLDEN["parameters_to_final_norm"]


@pytest.mark.parametrize("config", ["tiny", "small"])
def test_geometry_buffers_equal_laions(config):
    model = htsat_tiny() if config == "tiny" else HTSATAudioEncoder(**SMALL)
    buffers = dict(model.named_buffers())
    expected = GOLDEN["fixed_buffers"][config]
    assert set(expected) == {key for key in buffers if key.endswith(clap_audio.FIXED_BUFFER_SUFFIXES)}
    for key, facts in expected.items():
        array = buffers[key].numpy()
        assert [str(array.dtype), list(array.shape)] == [facts["dtype"], facts["shape"]], key
        assert hashlib.sha256(array.tobytes()).hexdigest() == facts["sha256"], key


def test_rows_are_grouped_band_major_in_time_order():
    model = htsat_tiny()
    # token (h, w) of the 8 x 8 grid carries h * 8 + w; grid row h = quarter * 2 + band
    tokens = torch.arange(64, dtype=torch.float32)[None, :, None].expand(1, 64, 3)
    rows = model.group_rows(tokens)[0, :, 0].long()
    for band in range(2):
        for step in range(32):
            quarter, column = divmod(step, 8)
            assert rows[band * 32 + step] == (quarter * 2 + band) * 8 + column, (band, step)


def test_the_encoder_refuses_mels_it_cannot_fold(tiny):
    with pytest.raises(ValueError, match="1024"):
        tiny(torch.zeros(1, 1025, 64))
    with pytest.raises(ValueError, match="64"):
        tiny(torch.zeros(1, 1001, 32))
    with pytest.raises(ValueError, match="fold"):
        HTSATAudioEncoder(depths=(2,) * 6, num_heads=(1,) * 6)


# ---------------------------------------------------------------- loading

def test_a_checkpoint_in_the_published_layout_loads(tiny):
    seeded = seeded_audio_weights(shapes_of(tiny), seed=0)
    model = load_clap_audio_weights(htsat_tiny(), checkpoint_like_the_release(seeded, tiny))
    assert all(torch.equal(value, seeded[key]) for key, value in model.state_dict().items())
    # a bare state dict without the DistributedDataParallel prefix loads the same
    bare = {"audio_branch." + key: value for key, value in seeded.items()}
    again = load_clap_audio_weights(htsat_tiny(), bare)
    assert all(torch.equal(value, seeded[key]) for key, value in again.state_dict().items())


def test_a_checkpoint_that_does_not_fit_is_refused_by_name(small_model):
    state = {"audio_branch." + key: value.clone() for key, value in small_model.state_dict().items()}
    before = {key: value.clone() for key, value in small_model.state_dict().items()}

    def refused(checkpoint, message):
        with pytest.raises(ValueError, match=message):
            load_clap_audio_weights(small_model, checkpoint)

    refused({key: value for key, value in state.items() if key != "audio_branch.layers.1.blocks.0.attn.qkv.bias"},
            r"missing keys \['audio_branch.layers.1.blocks.0.attn.qkv.bias'\]")
    refused(dict(state, **{"audio_branch.layers.3.blocks.2.norm1.weight": torch.ones(64)}),
            r"unexpected keys \['audio_branch.layers.3.blocks.2.norm1.weight'\]")
    refused(dict(state, **{"audio_branch.norm.bias": torch.zeros(63)}), r"audio_branch.norm.bias: \(63,\)")
    wrong_mask = small_model.layers[0].blocks[1].attn_mask.clone()
    wrong_mask[0, 0, 1] = -100.0
    refused(dict(state, **{"audio_branch.layers.0.blocks.1.attn_mask": wrong_mask}),
            "layers.0.blocks.1.attn_mask differs")
    refused({"text_branch.embeddings.position_ids": torch.zeros(1, 514)}, "no audio_branch")
    refused([1, 2], "is a dict")
    # text keys, the unused audio parts and correct geometry buffers are all accepted
    extra = {"text_branch.embeddings.position_ids": torch.zeros(1, 514),
             "audio_branch.tscam_conv.bias": torch.zeros(527),
             "audio_branch.layers.0.blocks.1.attn_mask": small_model.layers[0].blocks[1].attn_mask.clone()}
    prefixed = {"module." + key: value for key, value in {**state, **extra}.items()}
    load_clap_audio_weights(small_model, {"state_dict": prefixed})
    assert all(torch.equal(value, before[key]) for key, value in small_model.state_dict().items())


# ---------------------------------------------------------------- equality with laion_clap + VALOR

def test_small_configuration_matches_the_reference(small_model, golden_mel):
    # measured: at most 1.3e-6 from the reference (values up to 2.2); 1e-5 leaves room for other BLAS
    with torch.no_grad():
        maps = small_model(golden_mel[None, :SMALL_FRAMES])[0]
    expected = GOLDEN["small_maps"]
    assert list(maps.shape) == expected["shape"] == [16, 64]
    np.testing.assert_allclose(maps.numpy().ravel(), expected["values"], rtol=0, atol=1e-5)


def test_tokens_in_grid_order_fail_the_small_reference(small_model, golden_mel):
    # what a port that skips the regrouping stores: the same numbers in the wrong rows
    with torch.no_grad():
        tokens = small_model.encode(small_model.mel_to_image(golden_mel[None, :SMALL_FRAMES]))[0]
    expected = np.asarray(GOLDEN["small_maps"]["values"]).reshape(16, 64)
    assert not np.allclose(tokens.numpy(), expected, atol=1e-3)
    assert np.allclose(np.sort(tokens.numpy(), axis=0), np.sort(expected, axis=0), atol=1e-5)


@pytest.mark.e2e
def test_htsat_tiny_feature_maps_match_laion_clap_and_valor(tiny):
    # the whole chain on one 10-s clip: waveform -> index picking -> int16 -> mel -> HTSAT-tiny;
    # measured: at most 2.5e-6 from the reference (values up to 3.5), the map's row mean within
    # 1e-6 of laion's own 768-d embedding; 1e-4 leaves room for other BLAS
    model = load_clap_audio_weights(htsat_tiny(), checkpoint_like_the_release(
        seeded_audio_weights(shapes_of(tiny), seed=0), tiny)).eval()
    maps = clap_audio.clap_feature_maps(model, [golden_waveform()])
    expected = GOLDEN["maps"]
    assert maps.shape == (1, 64, 768) and maps.dtype == np.float32
    values = maps[0].astype(np.float64)
    assert float(values.sum()) == pytest.approx(expected["sum"], rel=1e-5, abs=1e-2)
    np.testing.assert_allclose(np.linalg.norm(values, axis=1), expected["row_norms"], rtol=1e-5)
    np.testing.assert_allclose(values.mean(axis=1), expected["row_means"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(values.mean(axis=0), expected["laion_embedding"], rtol=0, atol=1e-5)
    for row, col, value in expected["entries"]:
        assert values[row, col] == pytest.approx(value, abs=1e-4), (row, col)
