"""The original DHHN release's HCMN forward pass, restated with functional torch ops on the
release's state-dict key names; PROTOCOL.md §3-§5.

It shares no code with nets/hcmn.py on purpose: the tests use it as an independent reference
(an HCMN imported from release weights must compute the same outputs), and scripts/benchmark.py
uses it as the model of its published-style evaluation loop, which runs the release's computation.
"""
import torch
import torch.nn.functional as F


def release_hcmn_forward(sd, audio, frames, snippets):
    """The release HCMN in eval mode on a release state dict (nets.convert.hcmn_to_release):
    sequence-first attention, each HAN direction a call of its own, all 8 frames of a segment
    projected then average-pooled, one head call per scale, nearest interpolation.

    audio (B, 10, 128), frames (B, 80, 2048), snippets (B, 10, 512) -> the outputs of HCMN.forward."""
    han = "hat_encoder.layers.0."

    def linear(x, name):
        return F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"])

    def conv_block(x, branch, scale, kernel, stride):
        prefix = f"{branch}.{scale}.blocks.0."
        y = F.conv1d(x.permute(0, 2, 1), sd[prefix + "0.weight"], stride=stride,
                     padding=kernel // 2)
        y = F.batch_norm(y, sd[prefix + "1.running_mean"], sd[prefix + "1.running_var"],
                         sd[prefix + "1.weight"], sd[prefix + "1.bias"], training=False)
        return F.relu(y).permute(0, 2, 1)

    def attention(name, query, key_value):
        return F.multi_head_attention_forward(
            query, key_value, key_value, 512, 1, sd[han + name + ".in_proj_weight"],
            sd[han + name + ".in_proj_bias"], None, None, False, 0.0,
            sd[han + name + ".out_proj.weight"], sd[han + name + ".out_proj.bias"],
            training=False, need_weights=False)[0]

    def layer_norm(x, name):
        return F.layer_norm(x, (512,), sd[han + name + ".weight"], sd[han + name + ".bias"])

    def han_layer(query, other):
        query, other = query.permute(1, 0, 2), other.permute(1, 0, 2)
        query = layer_norm(query + attention("cm_attn", query, other)
                           + attention("self_attn", query, query), "norm1")
        query = layer_norm(query + linear(F.relu(linear(query, han + "linear1")), han + "linear2"),
                           "norm2")
        return query.permute(1, 0, 2)

    x_audio = linear(audio, "fc_a")
    per_frame = linear(frames, "fc_v").permute(0, 2, 1).unsqueeze(-1)
    per_segment = F.avg_pool2d(per_frame, (8, 1)).squeeze(-1).permute(0, 2, 1)
    x_visual = linear(torch.cat([per_segment, linear(snippets, "fc_st")], -1), "fc_fusion")
    features = []
    for scale, (kernel, stride) in enumerate([(1, 1), (3, 2), (5, 5)]):
        a = conv_block(x_audio, "conv_x1", scale, kernel, stride)
        v = conv_block(x_visual, "conv_x2", scale, kernel, stride)
        x = torch.stack([han_layer(a, v), han_layer(v, a)], dim=-2)
        if features:
            x = F.interpolate(x.permute(0, 3, 2, 1), size=[2, 10], mode="nearest")
            x = x.permute(0, 3, 2, 1) + features[-1]
        features.append(x)
    outputs = {"global_prob": [], "audio_prob": [], "visual_prob": [], "frame_prob": []}
    for x in features:
        frame_prob = torch.sigmoid(linear(x, "fc_prob"))
        temporal = torch.softmax(linear(x, "fc_frame_att"), dim=1) * frame_prob
        modality_weights = torch.softmax(linear(x, "fc_av_att"), dim=2)
        outputs["global_prob"].append((temporal * modality_weights).sum(2).sum(1))
        outputs["audio_prob"].append(temporal[:, :, 0].sum(1))
        outputs["visual_prob"].append(temporal[:, :, 1].sum(1))
        outputs["frame_prob"].append(frame_prob)
    return {key: torch.stack(values).mean(0) for key, values in outputs.items()}
