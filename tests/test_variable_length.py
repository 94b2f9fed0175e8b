"""Videos of any length in one padded batch: a padded segment never changes a result. Each model
scores a video alone (its own length, no mask) as it scores it inside a batch padded to the
longest video (with the mask), for lengths that do not divide the strides of DHHN's scales."""
import pytest
import torch

from nets import build_han, build_hcmn, build_mgns, default_feature_dims
from nets.dual import DualHHN

FRAMES_PER_SEGMENT = 8
LENGTHS = (10, 23, 61, 7)   # LLP's 10, and lengths that 2 and 5 do not divide
OUTPUT_KEYS = ("global_prob", "audio_prob", "visual_prob")


def video(length, seed):
    generator = torch.Generator().manual_seed(seed)
    dims = default_feature_dims()
    return (torch.randn(length, dims["audio"], generator=generator),
            torch.randn(length * FRAMES_PER_SEGMENT, dims["frames"], generator=generator),
            torch.randn(length, dims["snippets"], generator=generator))


def padded_batch(videos):
    """(audio, frames, snippets) padded with garbage (not zeros: padding must not matter whatever
    it holds) to the longest video, and the (B, T) mask of each video's own segments."""
    longest = max(v[0].shape[0] for v in videos)
    mask = torch.zeros(len(videos), longest, dtype=torch.bool)
    stacked = []
    for kind, rows_per_segment in enumerate((1, FRAMES_PER_SEGMENT, 1)):
        batch = torch.full((len(videos), longest * rows_per_segment, videos[0][kind].shape[1]), 7.0)
        for index, parts in enumerate(videos):
            batch[index, :parts[kind].shape[0]] = parts[kind]
        stacked.append(batch)
    for index, parts in enumerate(videos):
        mask[index, :parts[0].shape[0]] = True
    return (*stacked, mask)


MODELS = {
    "dhhn": lambda: build_hcmn(default_feature_dims()),
    "dhhn_single_scale": lambda: build_hcmn(default_feature_dims(), hier_feat=False),
    "han": lambda: build_han(default_feature_dims()),
    "valor_han": lambda: build_han(default_feature_dims(), hidden_dim=256, nhead=8, ff_dim=1024, num_layers=4,
                                   han_update="sequential"),
    "dual": lambda: DualHHN(build_hcmn(default_feature_dims()), build_hcmn(default_feature_dims())),
}


@pytest.mark.parametrize("name", MODELS)
def test_a_video_alone_equals_the_same_video_in_a_padded_batch(name, single_thread):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    videos = [video(length, seed) for seed, length in enumerate(LENGTHS)]
    with torch.no_grad():
        together = model(*padded_batch(videos))
        for index, parts in enumerate(videos):
            alone = model(*(part[None] for part in parts))
            length = parts[0].shape[0]
            for key in OUTPUT_KEYS:
                torch.testing.assert_close(together[key][index], alone[key][0], rtol=0, atol=2e-6)
            torch.testing.assert_close(together["frame_prob"][index, :length], alone["frame_prob"][0],
                                       rtol=0, atol=2e-6)


def test_without_the_mask_padding_would_change_the_result(single_thread):
    """The test above can fail: the same batch without its mask gives other probabilities."""
    torch.manual_seed(0)
    model = MODELS["dhhn"]().eval()
    videos = [video(length, seed) for seed, length in enumerate(LENGTHS)]
    *inputs, mask = padded_batch(videos)
    with torch.no_grad():
        alone = model(*(part[None] for part in videos[1]))
        unmasked = model(*inputs)
    assert (unmasked["audio_prob"][1] - alone["audio_prob"][0]).abs().max() > 1e-3


def test_a_full_mask_changes_nothing_on_llp(single_thread):
    """LLP's batches (every video 10 segments): the mask of all True is the unmasked model exactly."""
    torch.manual_seed(0)
    model = MODELS["dhhn"]().eval()
    *inputs, _ = padded_batch([video(10, seed) for seed in range(3)])
    with torch.no_grad():
        plain = model(*inputs)
        masked = model(*inputs, torch.ones(3, 10, dtype=torch.bool))
    for key in plain:
        torch.testing.assert_close(masked[key], plain[key], rtol=0, atol=1e-6)


@pytest.mark.parametrize("modality", ["audio", "visual"])
def test_dhhns_guiding_networks_score_a_video_alone_as_in_a_padded_batch(modality, single_thread):
    torch.manual_seed(0)
    audio_mgn, visual_mgn = (net.eval() for net in build_mgns(default_feature_dims()))
    videos = [video(length, seed) for seed, length in enumerate(LENGTHS)]
    audio, frames, snippets, mask = padded_batch(videos)

    def run(net_inputs, net_mask=None):
        if modality == "audio":
            return audio_mgn.with_segments(net_inputs[0], net_mask)
        return visual_mgn.with_segments(net_inputs[1], net_inputs[2], net_mask)
    with torch.no_grad():
        video_prob, segment_prob = run((audio, frames, snippets), mask)
        for index, parts in enumerate(videos):
            alone_video, alone_segments = run([part[None] for part in parts])
            torch.testing.assert_close(video_prob[index], alone_video[0], rtol=0, atol=2e-6)
            torch.testing.assert_close(segment_prob[index, :parts[0].shape[0]], alone_segments[0], rtol=0, atol=2e-6)
