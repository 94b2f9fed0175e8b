"""What tests/test_clip_text.py and tests/test_clap_text.py build alike, as their golden generators
built it: BPE merges learned from a small corpus, the tokenizer files written from them, seeded
weights in the reference's key layout, and the digest of a key layout."""
import hashlib
import json
from pathlib import Path

import numpy as np

from extraction.bpe_tokenizer import apply_merges


def train_merges(words, count):
    """`count` merges learned from a word list: each step merges the most frequent adjacent pair
    (ties: the smallest pair), as BPE training does."""
    words = [list(word) for word in words]
    merges = []
    for _ in range(count):
        counts = {}
        for word in words:
            for pair in zip(word, word[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        words = [apply_merges(word, {best: 0}) for word in words]
    return merges


def write_bpe_files(folder, prefix, vocab, merges):
    """<prefix>-vocab.json and <prefix>-merges.txt (with the "#version: 0.2" header) in `folder`;
    returns the vocabulary size."""
    Path(folder, f"{prefix}-vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    Path(folder, f"{prefix}-merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(pair) for pair in merges) + "\n", encoding="utf-8")
    return len(vocab)


def seeded_state(shapes, fixed, norm_marker, embedding_marker, seed=0):
    """float32 arrays for {key: shape}: int8 levels of numpy's RandomState (sorted keys) / 127 = u;
    biases 0.1 u, LayerNorm scales (keys holding `norm_marker`) 1 + 0.1 u, embedding tables (keys
    holding `embedding_marker`) 0.5 u, matrices u sqrt(3 / fan_in); the keys of `fixed` take its
    scalar values and draw nothing."""
    rng = np.random.RandomState(seed)
    state = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        if key in fixed:
            state[key] = np.array(fixed[key], dtype=np.float32)
            continue
        unit = rng.randint(-127, 128, size=shape, dtype=np.int8).astype(np.float32) / np.float32(127)
        if key.endswith("bias"):
            values = unit * np.float32(0.1)
        elif norm_marker in key:
            values = np.float32(1) + unit * np.float32(0.1)
        elif embedding_marker in key:
            values = unit * np.float32(0.5)
        else:
            values = unit * np.float32(np.sqrt(3.0 / int(np.prod(shape[1:]))))
        state[key] = values
    return state


def layout_digest(shapes):
    """sha256 of the sorted "key:(shape)" lines of a {key: shape} layout."""
    lines = sorted(f"{key}:{tuple(shape)}" for key, shape in shapes.items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
