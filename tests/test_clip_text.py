"""extraction/clip_text.py and the CLIP half of extraction/bpe_tokenizer.py: VALOR's prompt scores
(HF CLIPProcessor with padding=True, CLIPModel.get_text_features, logits_per_image) from our own
code, against transformers on seeded random weights and a hand-made vocabulary.

GOLDEN values (tests/golden/clip_text.json) were made once by a throw-away script outside the
repository, in a venv with VALOR's pins: Python 3.10.13, torch 1.12.1 (PyPI cu102 build, run on
CPU), transformers 4.30.2, tokenizers 0.13.3, numpy 1.26.4. The script executes the section of
this file between the two "shared with the golden generator" lines (so the vocabulary, the merges,
the texts and the weights are made by this very code), writes clip-vocab.json / clip-merges.txt
with `write_tokenizer_files`, and then: CLIPTokenizer and CLIPTokenizerFast (the one
CLIPProcessor loads, so the reference) on those files, called on TEXTS with padding=True (the slow
one, without ftfy, splits "it's" and "!!" otherwise and strips the accent of "café");
`CLIPModel(CLIPConfig(text_config=SMALL_TEXT, vision_config=SMALL_VISION))` with the text part
set by `seeded_text_state` through load_state_dict(strict=False) and the vision part from
torch.manual_seed(0); `get_text_features(input_ids, attention_mask)` and, on 3 random images,
`outputs.logits_per_image` and `outputs.image_embeds`. The layout digest is of HF's text keys
and shapes (without the position_ids buffer).

Measured on this project's machine (torch 2.13.0+cpu): the text embeddings differ from the
reference's by at most 1.5e-6 (values up to ~3.2), the logits by at most 2.1e-5 (values up to
~22, float32 rounding of 100 x cosine). The tolerances, 2e-5 and 2e-4, leave about ten times that.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from extraction.bpe_tokenizer import CLIPTokenizer, apply_merges, byte_characters, byte_vocab, read_merges
from extraction.clip_text import (
    CLIP_TEXT_L14,
    CLIPTextTower,
    clip_logits,
    clip_text_embeddings,
    clip_text_l14,
    load_clip_text_weights,
)
from extraction.zero_shot import VALOR_CLIP_PROMPTS
from text_tower_fixtures import layout_digest, seeded_state, train_merges, write_bpe_files
from utils.errors import UserError

GOLDEN_PATH = Path(__file__).parent / "golden" / "clip_text.json"
EMBEDDING_ATOL = 2e-5
LOGIT_ATOL = 2e-4
# HF's text part of openai/clip-vit-large-patch14: 123,060,480 (text_model) + 768 x 768 projection
CLIP_TEXT_L14_PARAMS = 123_650_304 + 1

# ---- shared with the golden generator (begin)
TEXTS = [*VALOR_CLIP_PROMPTS[:6], "A photo of a acoustic guiter.", "It's   2 dogs' BARKING!!",
         "café 42 lawn_mower", "a"]
CORPUS = " ".join(VALOR_CLIP_PROMPTS).lower() + " dogs barking cafe lawn mower"
MERGES = 120
SMALL_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                    image_size=28, patch_size=14, projection_dim=24)


def clip_words(text):
    table = byte_characters()
    words = []
    for piece in text.split():
        chars = [table[b] for b in piece.encode("utf-8")]
        chars[-1] += "</w>"
        words.append(chars)
    return words


def clip_vocab_and_merges():
    """({token: id}, [(a, b)]) in CLIP's order: bytes, bytes + </w>, merges, the two specials last."""
    merges = train_merges(clip_words(CORPUS), MERGES)
    tokens = list(byte_vocab((), word_end="</w>")) + ["".join(pair) for pair in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}, merges


def write_tokenizer_files(folder):
    return write_bpe_files(folder, "clip", *clip_vocab_and_merges())


def small_text_config(vocab_size):
    return dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=77, projection_dim=24)


def seeded_text_state(shapes, seed=0):
    """Seeded weights (text_tower_fixtures.seeded_state); logit_scale log(100), the published value."""
    return seeded_state(shapes, {"logit_scale": np.log(100.0)}, "norm", "embedding", seed)
# ---- shared with the golden generator (end)


def ours_config(vocab_size):
    config = small_text_config(vocab_size)
    return dict(vocab_size=vocab_size, width=config["hidden_size"], layers=config["num_hidden_layers"],
                heads=config["num_attention_heads"], mlp_width=config["intermediate_size"],
                context_length=config["max_position_embeddings"], projection_dim=config["projection_dim"])


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN_PATH.read_text())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip_tokenizer")
    size = write_tokenizer_files(folder)
    return folder, size


@pytest.fixture(scope="module")
def tokenizer(files):
    folder, _ = files
    return CLIPTokenizer.from_files(folder / "clip-vocab.json", folder / "clip-merges.txt")


@pytest.fixture(scope="module")
def model(files):
    _, size = files
    tower = CLIPTextTower(**ours_config(size))
    shapes = {key: tuple(value.shape) for key, value in tower.state_dict().items()}
    state = {key: torch.from_numpy(value) for key, value in seeded_text_state(shapes).items()}
    return load_clip_text_weights(tower, state).eval()


def test_tokenizer_ids_equal_transformers(tokenizer, golden):
    batch = tokenizer(TEXTS)
    assert batch["input_ids"].tolist() == golden["input_ids"]
    assert batch["attention_mask"].tolist() == golden["attention_mask"]
    # padding=True: as long as the longest text, padded with <|endoftext|>
    assert batch["input_ids"].shape[1] == max(map(len, golden["input_ids"]))


def test_tokenizer_pieces_and_word_ends(tokenizer):
    assert tokenizer.pieces("It's   2 dogs' BARKING!!") == ["it", "'s", "2", "dogs", "'", "barking", "!!"]
    assert tokenizer.pieces("lawn_mower 42") == ["lawn", "_", "mower", "4", "2"]
    vocab = tokenizer.vocab
    ids = tokenizer.ids("a")
    assert ids == [vocab["<|startoftext|>"], vocab["a</w>"], vocab["<|endoftext|>"]]
    with pytest.raises(UserError, match="at most 77"):
        tokenizer.ids(" ".join(["x"] * 80))


def test_merges_apply_by_rank():
    ranks = {("a", "b"): 1, ("b", "c"): 0, ("a", "bc"): 2}
    assert apply_merges(list("abc"), ranks) == ["abc"]          # b+c first (rank 0), then a+bc
    assert apply_merges(list("abab"), {("a", "b"): 0}) == ["ab", "ab"]
    assert apply_merges(list("aaa"), {("a", "a"): 0}) == ["aa", "a"]   # left to right, no overlap


def test_merges_file_header_and_cap(tmp_path):
    path = tmp_path / "merges.txt"
    path.write_text("#version: 0.2\na b\nab c\n\n")
    assert read_merges(path) == [("a", "b"), ("ab", "c")]
    assert read_merges(path, limit=1) == [("a", "b")]
    path.write_text("#version: 0.2\na b c\n")
    with pytest.raises(UserError, match="line 2"):
        read_merges(path)


def test_layout_equals_hf(model, golden):
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert layout_digest(shapes) == golden["small_layout"]["digest"]
    assert len(shapes) == golden["small_layout"]["keys"]


def test_vit_l14_text_layout_and_size():
    with torch.device("meta"):
        tower = clip_text_l14()
    assert CLIP_TEXT_L14 == dict(vocab_size=49408, width=768, layers=12, heads=12, mlp_width=3072, context_length=77,
                                 projection_dim=768)
    assert sum(p.numel() for p in tower.parameters()) == CLIP_TEXT_L14_PARAMS   # + logit_scale
    assert "text_model.encoder.layers.11.mlp.fc2.weight" in tower.state_dict()


def test_text_features_equal_get_text_features(model, tokenizer, golden):
    batch = tokenizer(TEXTS)
    with torch.no_grad():
        ours = model(torch.from_numpy(batch["input_ids"]), torch.from_numpy(batch["attention_mask"])).numpy()
    np.testing.assert_allclose(ours, np.array(golden["text_embeds"]), rtol=0, atol=EMBEDDING_ATOL)
    # padding does not change a row: one text alone gives the same embedding
    alone = clip_text_embeddings(model, tokenizer, TEXTS[-1:])
    np.testing.assert_allclose(alone[0], clip_text_embeddings(model, tokenizer, TEXTS)[-1], rtol=0, atol=1e-6)


def test_logits_per_image_equal_hf(model, tokenizer, golden):
    text = clip_text_embeddings(model, tokenizer, TEXTS)
    logits = clip_logits(np.array(golden["image_embeds"], dtype=np.float32), text, model.logit_scale.detach())
    np.testing.assert_allclose(logits.numpy(), np.array(golden["logits_per_image"]), rtol=0, atol=LOGIT_ATOL)
    assert model.logit_scale.exp().item() == pytest.approx(100.0, rel=1e-6)


def test_a_state_dict_that_does_not_fit_is_refused(model, files):
    _, size = files
    state = {key: torch.from_numpy(v) for key, v in
             seeded_text_state({k: tuple(t.shape) for k, t in model.state_dict().items()}).items()}
    fresh = CLIPTextTower(**ours_config(size))
    with pytest.raises(UserError, match="missing keys \\['text_model.final_layer_norm.bias'\\]"):
        load_clip_text_weights(fresh, {k: v for k, v in state.items() if k != "text_model.final_layer_norm.bias"})
    with pytest.raises(UserError, match="text_projection.weight: \\(8, 64\\) instead of \\(24, 64\\)"):
        load_clip_text_weights(fresh, dict(state, **{"text_projection.weight": torch.zeros(8, 64)}))
    with pytest.raises(UserError, match="position_ids"):
        load_clip_text_weights(fresh, dict(state, **{"text_model.embeddings.position_ids": torch.zeros(1, 77)}))
    # the whole CLIPModel file: vision keys are skipped, the position buffer accepted
    whole = dict(state, **{"vision_model.post_layernorm.bias": torch.zeros(3), "visual_projection.weight":
                           torch.zeros(2, 3), "text_model.embeddings.position_ids": torch.arange(77)[None]})
    loaded = load_clip_text_weights(fresh, whole)
    assert torch.equal(loaded.text_projection.weight, state["text_projection.weight"])
