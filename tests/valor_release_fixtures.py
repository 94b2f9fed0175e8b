"""A folder laid out as VALOR's README lays out its own (./data with the LLP annotations, feats/,
CLIP/ and CLAP/; ./models/model_VALOR*/checkpoint_best.pt), filled with the synthetic LLP and
seeded random weights in VALOR's MMIL_Net key layout. Not a test module itself.

The same folder, made by the same functions, was scored once by VALOR's own main_avvp.py (in a
throw-away environment; tests/golden/valor_release.json says how); tests/test_released_models.py
scores it with main_DHHN.py and compares.
"""
import os
import shutil

import numpy as np
import torch

from avvp_data.synthetic_llp import generate_synthetic_llp, write_pseudo_labels

# the released models' settings (VALOR's scripts/test_valor*.sh)
VALOR_RELEASES = {
    "model_VALOR": dict(hidden_dim=512, num_layers=1, features="official"),
    "model_VALOR+": dict(hidden_dim=256, num_layers=4, features="official"),
    "model_VALOR++": dict(hidden_dim=256, num_layers=4, features="clip_clap"),
}
NHEAD, FF_DIM = 8, 1024
SIZES = dict(n_train=24, n_val=16, n_test=160)
SEED = 3


def make_valor_folder(root):
    """Write <root>/data in VALOR's layout (annotations, feats/, CLIP/ and CLAP/ features and
    segment pseudo-labels) from the synthetic LLP, and <root>/models/<release>/checkpoint_best.pt."""
    source = os.path.join(root, "synthetic")
    generate_synthetic_llp(source, seed=SEED, modern_features=True, **SIZES)
    write_pseudo_labels(source, os.path.join(root, "pseudo"), precision=0.9, recall=0.8, seed=0)
    data = os.path.join(root, "data")
    os.makedirs(data, exist_ok=True)
    for name in os.listdir(os.path.join(source, "data")):
        if name.endswith(".csv"):
            shutil.copy(os.path.join(source, "data", name), data)
    shutil.copytree(os.path.join(source, "feats"), os.path.join(data, "feats"))
    for kind in ("CLIP", "CLAP"):
        shutil.copytree(os.path.join(source, kind, "features"), os.path.join(data, kind, "features"))
        shutil.copytree(os.path.join(root, "pseudo", kind, "segment_pseudo_labels"),
                        os.path.join(data, kind, "segment_pseudo_labels"))
    for index, (release, settings) in enumerate(VALOR_RELEASES.items()):
        dims = (768, 768) if settings["features"] == "clip_clap" else (128, 2048)
        state_dict = valor_state_dict(index, settings["hidden_dim"], settings["num_layers"], *dims)
        os.makedirs(os.path.join(root, "models", release), exist_ok=True)
        torch.save(state_dict, os.path.join(root, "models", release, "checkpoint_best.pt"))
    return root


def valor_state_dict(seed, hidden_dim, num_layers, audio_dim=128, video_dim=2048, num_classes=25):
    """{key: tensor} of VALOR's MMIL_Net (main_network.py's names; its two final LayerNorms too),
    drawn by numpy so that every machine makes the same weights: int8 levels times a per-tensor
    scale, which keeps the attention and the heads away from uniform outputs (a random network
    otherwise puts every probability near the 0.5 threshold, where float rounding flips segments)."""
    rng = np.random.RandomState(seed)

    def weight(*shape, scale=None):
        scale = scale if scale is not None else 1.0 / np.sqrt(shape[-1])
        return torch.from_numpy((rng.randint(-127, 128, size=shape) / 127.0 * scale * np.sqrt(3)).astype(np.float32))

    def layer_norm(prefix):
        return {prefix + "weight": 1 + weight(hidden_dim, scale=0.1), prefix + "bias": weight(hidden_dim, scale=0.1)}

    sd = {}
    for name, (out_dim, in_dim) in {"fc_a": (hidden_dim, audio_dim), "fc_v": (hidden_dim, video_dim),
                                    "fc_st": (hidden_dim, 512), "fc_fusion": (hidden_dim, 2 * hidden_dim)}.items():
        sd[f"{name}.weight"], sd[f"{name}.bias"] = weight(out_dim, in_dim), weight(out_dim, scale=0.1)
    for index in range(num_layers):
        prefix = f"hat_encoder.layers.{index}."
        for attention in ("self_attn", "cm_attn"):
            sd[f"{prefix}{attention}.in_proj_weight"] = weight(3 * hidden_dim, hidden_dim)
            sd[f"{prefix}{attention}.in_proj_bias"] = weight(3 * hidden_dim, scale=0.1)
            sd[f"{prefix}{attention}.out_proj.weight"] = weight(hidden_dim, hidden_dim)
            sd[f"{prefix}{attention}.out_proj.bias"] = weight(hidden_dim, scale=0.1)
        sd[prefix + "linear1.weight"] = weight(FF_DIM, hidden_dim)
        sd[prefix + "linear1.bias"] = weight(FF_DIM, scale=0.1)
        sd[prefix + "linear2.weight"] = weight(hidden_dim, FF_DIM)
        sd[prefix + "linear2.bias"] = weight(hidden_dim, scale=0.1)
        sd.update(layer_norm(prefix + "norm1."))
        sd.update(layer_norm(prefix + "norm2."))
    sd.update(layer_norm("hat_encoder.final_norm_a."))
    sd.update(layer_norm("hat_encoder.final_norm_v."))
    # heads: a wide spread of logits, so that most probabilities are far from 0.5
    sd["fc_prob.weight"] = weight(num_classes, hidden_dim, scale=3.0)
    sd["fc_prob.bias"] = weight(num_classes, scale=2.0)
    for name in ("fc_frame_att", "fc_av_att"):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = weight(num_classes, hidden_dim, scale=1.0), weight(num_classes)
    return sd


def valor_test_command(release, python_main):
    """VALOR's scripts/test_valor*.sh for `release`, with its entry point replaced by `python_main`
    (a list: [python, script]); run it from the folder make_valor_folder made."""
    settings = VALOR_RELEASES[release]
    audio_dir, video_dir = (("./data/CLAP/features", "./data/CLIP/features") if settings["features"] == "clip_clap"
                            else ("./data/feats/vggish", "./data/feats/res152"))
    return [*python_main, "--mode", "test", "--model", "MMIL_Net", "--model_name", release,
            "--audio_dir", audio_dir, "--video_dir", video_dir, "--st_dir", "./data/feats/r2plus1d_18",
            "--label_train", "./data/AVVP_train.csv", "--label_val", "./data/AVVP_val_pd.csv",
            "--label_test", "./data/AVVP_test_pd.csv", "--hidden_dim", str(settings["hidden_dim"]),
            "--nhead", str(NHEAD), "--ff_dim", str(FF_DIM), "--num_layers", str(settings["num_layers"]),
            "--norm_where", "post_norm", "--v_pseudo_data_dir", "./data/CLIP/segment_pseudo_labels",
            "--a_pseudo_data_dir", "./data/CLAP/segment_pseudo_labels"]
