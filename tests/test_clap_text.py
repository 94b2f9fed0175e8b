"""extraction/clap_text.py and the RoBERTa half of extraction/bpe_tokenizer.py: VALOR's CLAP prompt
and window scores (laion_clap 1.1.4's get_text_embedding, get_audio_embedding_from_data on VALOR's
~1-s windows, logit_scale_a) from our own code, against laion_clap on seeded random weights.

GOLDEN values (tests/golden/clap_text.json; its "reference" entry names the versions) were made
once by a throw-away script outside the repository, in a venv with laion-clap 1.1.4 (PyPI, its own
code unchanged), transformers 4.30.2, tokenizers 0.13.3, numpy 1.23.5, torch 2.13.0+cpu, Python
3.11.7. The script executes the section of this file between the two "shared with the golden
generator" lines, writes roberta-vocab.json / roberta-merges.txt with `write_tokenizer_files`, and
builds `laion_clap.CLAP_Module(enable_fusion=True)` offline: its two hub downloads are replaced,
RobertaTokenizer.from_pretrained('roberta-base') by the slow RobertaTokenizer on those files and
RobertaModel.from_pretrained('roberta-base') by RobertaModel(RobertaConfig(**SMALL_ROBERTA)). Its
state is set with load_state_dict: the text branch, both projections and logit_scale_a by
`seeded_clap_state`, HTSAT's keys by tests/test_clap_audio.py's seeded_audio_weights(seed=0)
(the rest of the audio branch, unused here, from torch.manual_seed(0)). Then: CLAP_Module.tokenizer
and get_text_embedding on TEXTS; VALOR's own window code (clap_preprocess.get_audio_embedding:
round(linspace(0, N, 11)) starts, N // 10 samples) on `golden_waveform()`, then
get_audio_embedding_from_data; laion's audio_branch "embedding" of the same windows; logits =
logit_scale_a.exp() * audio @ text^T. Two modules laion imports could not be loaded beside that
torch (torchaudio 2.11 and torchvision 0.29 wheels need their own torch), so the script put
stand-ins in sys.modules: torchvision with empty names (nothing on this path uses it) and
torchaudio.transforms' MelSpectrogram / AmplitudeToDB computed by extraction/clap_mel.py, whose
equality with torchaudio's is what tests/test_clap_audio.py proves on its own golden numbers.

Measured on this project's machine (torch 2.13.0+cpu): text embeddings within 1.2e-7 of the
reference's, audio embeddings within 4.5e-8, HTSAT's 768-d embeddings within 4.8e-7 (values up to
~3.5), logits within 1.7e-6 (values up to ~1.6; scale e^3). Tolerances: 1e-6 on unit embeddings,
2e-5 on the 768-d embeddings and the logits. The reference ran on the same torch as ours (the
HTSAT map itself is checked against an older stack by tests/test_clap_audio.py).
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from extraction.bpe_tokenizer import RobertaTokenizer, byte_characters, byte_vocab
from extraction.clap_audio import HTSATAudioEncoder, load_clap_audio_weights
from extraction.clap_text import (
    ROBERTA_BASE,
    CLAPTextBranch,
    CLAPZeroShot,
    clap_text_embeddings,
    clap_window_embeddings,
    load_clap_zero_shot_weights,
    repeat_pad,
    window_bounds,
    window_mels,
)
from extraction.zero_shot import CLAP_PREFIX, VALOR_CLAP_NAMES
from text_tower_fixtures import layout_digest, seeded_state, train_merges, write_bpe_files
from utils.errors import UserError

GOLDEN_PATH = Path(__file__).parent / "golden" / "clap_text.json"
UNIT_ATOL = 1e-6
EMBEDDING_ATOL = 2e-5
LOGIT_ATOL = 2e-5

# ---- shared with the golden generator (begin)
TEXTS = [CLAP_PREFIX + name.lower() for name in VALOR_CLAP_NAMES[:6]] + [
    "This is a sound of baby cry, infant cry", "It's 2 DOGS   barking!!", "café 42 lawn_mower",
    " ".join(["dog"] * 90)]      # longer than 77 tokens: cut
CORPUS = " ".join(CLAP_PREFIX + name.lower() for name in VALOR_CLAP_NAMES) + " dogs barking cafe lawn mower"
MERGES = 150
SMALL_ROBERTA = dict(hidden_size=768, num_hidden_layers=2, num_attention_heads=12, intermediate_size=256,
                     max_position_embeddings=80, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
                     eos_token_id=2, layer_norm_eps=1e-5)
LOGIT_SCALE_A = 3.0
WAVEFORM_SAMPLES = 24007        # half a second: ten windows of 2,400 samples, each tiled 200 times


def roberta_vocab_and_merges():
    """({token: id}, merges) in roberta-base's order: <s> <pad> </s> <unk>, bytes, merges, <mask>."""
    table = byte_characters()
    words = [[table[b] for b in (" " + word).encode("utf-8")] for word in CORPUS.split()]
    merges = train_merges(words, MERGES)
    tokens = list(byte_vocab(("<s>", "<pad>", "</s>", "<unk>"))) + ["".join(pair) for pair in merges] + ["<mask>"]
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}, merges


def write_tokenizer_files(folder):
    return write_bpe_files(folder, "roberta", *roberta_vocab_and_merges())


def seeded_clap_state(shapes, seed=0):
    """Seeded weights (text_tower_fixtures.seeded_state); logit_scale_a LOGIT_SCALE_A."""
    return seeded_state(shapes, {"logit_scale_a": LOGIT_SCALE_A}, "LayerNorm", "embeddings", seed)


def golden_waveform():
    """(24007,) float32 at 48 kHz: two tones and noise, with a clipped stretch."""
    t = np.arange(WAVEFORM_SAMPLES) / 48000.0
    rng = np.random.RandomState(7)
    wave = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 5000 * t) + 0.1 * rng.standard_normal(len(t))
    wave[12000:13000] *= 4
    return wave.astype(np.float32)
# ---- shared with the golden generator (end)


def ours_text_config(vocab_size):
    return dict(vocab_size=vocab_size, width=SMALL_ROBERTA["hidden_size"], layers=SMALL_ROBERTA["num_hidden_layers"],
                heads=SMALL_ROBERTA["num_attention_heads"], mlp_width=SMALL_ROBERTA["intermediate_size"],
                max_positions=SMALL_ROBERTA["max_position_embeddings"])


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN_PATH.read_text())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("roberta_tokenizer")
    return folder, write_tokenizer_files(folder)


@pytest.fixture(scope="module")
def tokenizer(files):
    folder, _ = files
    return RobertaTokenizer.from_files(folder / "roberta-vocab.json", folder / "roberta-merges.txt")


def seeded_model(size):
    model = CLAPZeroShot(CLAPTextBranch(**ours_text_config(size)))
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    return model, {key: torch.from_numpy(value) for key, value in seeded_clap_state(shapes).items()}


@pytest.fixture(scope="module")
def model(files):
    zero_shot, state = seeded_model(files[1])
    return load_clap_zero_shot_weights(zero_shot, state).eval()


def test_tokenizer_ids_equal_laions_roberta_tokenizer(tokenizer, golden):
    batch = tokenizer(TEXTS)
    assert batch["input_ids"].shape == (len(TEXTS), 77)
    assert batch["input_ids"].tolist() == golden["input_ids"]
    assert batch["attention_mask"].tolist() == golden["attention_mask"]
    # the long text is cut to 77 with </s> kept last
    assert batch["input_ids"][-1, -1] == tokenizer.vocab["</s>"] and batch["attention_mask"][-1].all()


def test_tokenizer_keeps_the_blank_before_a_piece(tokenizer):
    assert tokenizer.pieces("It's 2 DOGS   barking!!") == ["It", "'s", " 2", " DOGS", "  ", " barking", "!!"]


def test_layout_equals_laions(model, golden):
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert layout_digest(shapes) == golden["layout"]["digest"]
    assert len(shapes) == golden["layout"]["keys"]


def test_roberta_base_size():
    with torch.device("meta"):
        branch = CLAPTextBranch(**ROBERTA_BASE)
    # RobertaModel('roberta-base') with its pooler: 124,645,632 parameters
    assert sum(p.numel() for p in branch.parameters()) == 124_645_632


def test_text_embeddings_equal_get_text_embedding(model, tokenizer, golden):
    ours = clap_text_embeddings(model, tokenizer, TEXTS)
    np.testing.assert_allclose(ours, np.array(golden["text_embeds"]), rtol=0, atol=UNIT_ATOL)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=0, atol=1e-6)


def test_windows_are_valors():
    assert window_bounds(24007) == [(0, 2400), (2401, 4801), (4801, 7201), (7202, 9602), (9603, 12003),
                                    (12004, 14404), (14404, 16804), (16805, 19205), (19206, 21606), (21606, 24006)]
    assert window_bounds(15)[-1] == (14, 15)      # round(13.5) = 14 (halves to even), 15 // 10 = 1 sample
    padded = repeat_pad(np.array([1.0, 2.0, 3.0], dtype=np.float32), length=8)
    assert padded.tolist() == [1, 2, 3, 1, 2, 3, 0, 0]
    with pytest.raises(ValueError, match="longer than 10 s"):
        repeat_pad(np.zeros(9), length=8)


@pytest.fixture(scope="module")
def encoder():
    from test_clap_audio import seeded_audio_weights, shapes_of
    model = HTSATAudioEncoder()
    return load_clap_audio_weights(model, {"audio_branch." + key: value for key, value in
                                           seeded_audio_weights(shapes_of(model), seed=0).items()}).eval()


def test_audio_projection_of_laions_embedding_equals_laions_audio_embedding(model, golden):
    embedding = torch.tensor(golden["htsat_embedding"])[:, None, :]     # a one-row map: its mean is itself
    with torch.no_grad():
        ours = model.audio_embeddings(embedding).numpy()
    np.testing.assert_allclose(ours, np.array(golden["audio_embeds"]), rtol=0, atol=UNIT_ATOL)


@pytest.mark.e2e
def test_window_embeddings_and_logits_equal_laion(encoder, model, tokenizer, golden):
    with torch.no_grad():
        maps = encoder(window_mels(golden_waveform()))
    np.testing.assert_allclose(maps.mean(dim=1).numpy(), np.array(golden["htsat_embedding"]), rtol=0,
                               atol=EMBEDDING_ATOL)
    audio = clap_window_embeddings(encoder, model, golden_waveform())
    assert audio.shape == (10, 512) and audio.dtype == np.float32
    np.testing.assert_allclose(audio, np.array(golden["audio_embeds"]), rtol=0, atol=UNIT_ATOL)
    logits = model.logits(audio, clap_text_embeddings(model, tokenizer, TEXTS)).detach().numpy()
    np.testing.assert_allclose(logits, np.array(golden["logits"]), rtol=0, atol=LOGIT_ATOL)
    assert model.logit_scale_a.exp().item() == pytest.approx(math.exp(LOGIT_SCALE_A), rel=1e-6)


def test_a_checkpoint_that_does_not_fit_is_refused(files):
    zero_shot, state = seeded_model(files[1])
    wrapped = {"state_dict": {"module." + key: value for key, value in state.items()}}
    wrapped["state_dict"]["module.text_branch.embeddings.position_ids"] = torch.arange(80)[None]
    wrapped["state_dict"]["module.audio_branch.bn0.weight"] = torch.ones(64)      # ignored
    wrapped["state_dict"]["module.logit_scale_t"] = torch.tensor(1.0)             # ignored
    load_clap_zero_shot_weights(zero_shot, wrapped)
    assert torch.equal(zero_shot.text_projection[2].weight, state["text_projection.2.weight"])
    with pytest.raises(UserError, match="missing keys \\['audio_projection.0.bias'\\]"):
        load_clap_zero_shot_weights(zero_shot, {k: v for k, v in state.items() if k != "audio_projection.0.bias"})
    with pytest.raises(UserError, match="position_ids is not 0 .. 79"):
        load_clap_zero_shot_weights(zero_shot, dict(state, **{"text_branch.embeddings.position_ids":
                                                              torch.zeros(1, 80)}))
    with pytest.raises(UserError, match="text_projection.0.weight: \\(512, 10\\)"):
        load_clap_zero_shot_weights(zero_shot, dict(state, **{"text_projection.0.weight": torch.zeros(512, 10)}))
