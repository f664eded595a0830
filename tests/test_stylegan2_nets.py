"""StyleGAN2 networks: rosinality's state-dict layout and checkpoints, the layers' math, shapes and gradients.

Expected layouts are written out here from rosinality/stylegan2-pytorch ``model.py`` (and, for the
converter, NVlabs stylegan2-ada-pytorch ``training/networks.py``), not read back from our modules.
"""
import argparse
import math

import pytest
import torch
from torch.nn import functional as F

from bicyclegan_pl.errors import UserError
from bicyclegan_pl.nets.stylegan2 import (
    Blur,
    ModulatedConv2d,
    StyleGAN2CheckpointError,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
    Upsample,
    convert_stylegan2_ada_state_dict,
    fused_leaky_relu,
    load_rosinality_checkpoint,
    make_blur_kernel,
    stylegan2_channels,
    upfirdn2d,
)

SIZE = 32
STYLE_DIM = 16
N_MLP = 2
MAX_CHANNELS = 8  # tiny networks for the forward tests
BLUR_TAPS = [1.0, 3.0, 3.0, 1.0]


def tiny_generator(seed: int = 0) -> StyleGAN2Generator:
    """A 32 px generator with 8 channels whose noise strengths are non-zero (they start at zero),
    so that the noise inputs visibly matter."""
    torch.manual_seed(seed)
    generator = StyleGAN2Generator(SIZE, STYLE_DIM, N_MLP, max_channels=MAX_CHANNELS)
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith("noise.weight"):
                parameter.fill_(0.5)
    return generator


def rosinality_generator_layout(size: int, style_dim: int, n_mlp: int, channels: dict[int, int]) -> list[tuple[str, tuple]]:
    """(key, shape) of rosinality's Generator state dict, in its order: mapping, constant, 4x4
    conv and ToRGB, the StyledConvs (upsampling one first at each level), the ToRGBs, the noise buffers."""
    layout: list[tuple[str, tuple]] = []
    for index in range(1, n_mlp + 1):  # style.0 is the PixelNorm
        layout += [(f"style.{index}.weight", (style_dim, style_dim)), (f"style.{index}.bias", (style_dim,))]
    layout.append(("input.input", (1, channels[4], 4, 4)))

    def styled_conv(prefix: str, in_channels: int, out_channels: int, upsample: bool) -> None:
        layout.append((f"{prefix}.conv.weight", (1, out_channels, in_channels, 3, 3)))
        if upsample:
            layout.append((f"{prefix}.conv.blur.kernel", (4, 4)))
        layout.append((f"{prefix}.conv.modulation.weight", (in_channels, style_dim)))
        layout.append((f"{prefix}.conv.modulation.bias", (in_channels,)))
        layout.append((f"{prefix}.noise.weight", (1,)))
        layout.append((f"{prefix}.activate.bias", (out_channels,)))

    def to_rgb(prefix: str, in_channels: int, upsample: bool) -> None:
        layout.append((f"{prefix}.bias", (1, 3, 1, 1)))
        if upsample:
            layout.append((f"{prefix}.upsample.kernel", (4, 4)))
        layout.append((f"{prefix}.conv.weight", (1, 3, in_channels, 1, 1)))
        layout.append((f"{prefix}.conv.modulation.weight", (in_channels, style_dim)))
        layout.append((f"{prefix}.conv.modulation.bias", (in_channels,)))

    styled_conv("conv1", channels[4], channels[4], upsample=False)
    to_rgb("to_rgb1", channels[4], upsample=False)
    resolutions = [2**level for level in range(3, int(math.log2(size)) + 1)]
    previous = channels[4]
    for level, resolution in enumerate(resolutions):
        styled_conv(f"convs.{2 * level}", previous, channels[resolution], upsample=True)
        styled_conv(f"convs.{2 * level + 1}", channels[resolution], channels[resolution], upsample=False)
        previous = channels[resolution]
    for level, resolution in enumerate(resolutions):
        to_rgb(f"to_rgbs.{level}", channels[resolution], upsample=True)
    noise_resolutions = [4] + [resolution for resolution in resolutions for _ in range(2)]
    layout += [(f"noises.noise_{index}", (1, 1, side, side)) for index, side in enumerate(noise_resolutions)]
    return layout


ROSINALITY_TABLE = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


@pytest.mark.parametrize("channel_multiplier", [1, 2])
def test_channel_table_is_rosinalitys_unless_overridden(channel_multiplier: int) -> None:
    expected = {
        resolution: count * (channel_multiplier if resolution >= 64 else 1) for resolution, count in ROSINALITY_TABLE.items()
    }
    assert stylegan2_channels(channel_multiplier) == expected
    capped = stylegan2_channels(channel_multiplier, max_channels=64)
    assert capped == {resolution: min(count, 64) for resolution, count in expected.items()}
    assert stylegan2_channels(channel_multiplier, channels={"8": 7}, max_channels=64)[8] == 7  # YAML gives string keys


def test_generator_state_dict_has_rosinalitys_keys_and_shapes() -> None:
    generator = StyleGAN2Generator(SIZE, STYLE_DIM, N_MLP)  # rosinality's own channel table: 512 up to 32 px
    layout = [(key, tuple(tensor.shape)) for key, tensor in generator.state_dict().items()]
    assert layout == rosinality_generator_layout(SIZE, STYLE_DIM, N_MLP, ROSINALITY_TABLE)
    state = generator.state_dict()
    assert state["style.1.weight"].shape == (STYLE_DIM, STYLE_DIM)
    assert state["conv1.conv.modulation.weight"].shape == (512, STYLE_DIM)
    assert state["convs.0.conv.weight"].shape == (1, 512, 512, 3, 3)
    assert state["noises.noise_0"].shape == (1, 1, 4, 4)
    assert state["to_rgbs.0.conv.weight"].shape == (1, 3, 512, 1, 1)
    assert generator.num_ws == generator.n_latent == 8 and generator.w_dim == generator.z_dim == STYLE_DIM
    # The blur kernels are buffers in the checkpoints: rosinality's values, gain 4 for the upsampling ones.
    torch.testing.assert_close(state["convs.0.conv.blur.kernel"], torch.outer(torch.tensor(BLUR_TAPS), torch.tensor(BLUR_TAPS)) / 16)


def test_discriminator_state_dict_has_rosinalitys_keys_and_shapes() -> None:
    discriminator = StyleGAN2Discriminator(SIZE, max_channels=MAX_CHANNELS)
    layout = {key: tuple(tensor.shape) for key, tensor in discriminator.state_dict().items()}
    channels = MAX_CHANNELS
    expected = {"convs.0.0.weight": (channels, 3, 1, 1), "convs.0.1.bias": (channels,)}
    for block in (1, 2, 3):  # 32 -> 16 -> 8 -> 4
        expected |= {
            f"convs.{block}.conv1.0.weight": (channels, channels, 3, 3),
            f"convs.{block}.conv1.1.bias": (channels,),
            f"convs.{block}.conv2.0.kernel": (4, 4),
            f"convs.{block}.conv2.1.weight": (channels, channels, 3, 3),
            f"convs.{block}.conv2.2.bias": (channels,),
            f"convs.{block}.skip.0.kernel": (4, 4),
            f"convs.{block}.skip.1.weight": (channels, channels, 1, 1),
        }
    expected |= {
        "final_conv.0.weight": (channels, channels + 1, 3, 3),
        "final_conv.1.bias": (channels,),
        "final_linear.0.weight": (channels, channels * 16),
        "final_linear.0.bias": (channels,),
        "final_linear.1.weight": (1, channels),
        "final_linear.1.bias": (1,),
    }
    assert layout == expected


def test_rosinality_checkpoint_round_trips_bit_for_bit(tmp_path) -> None:
    generator = tiny_generator().eval()
    latent_avg = torch.randn(STYLE_DIM)
    path = tmp_path / "checkpoint.pt"
    # As rosinality's train.py saves it, argparse Namespace included (loaded without unpickling code).
    torch.save({"g_ema": generator.state_dict(), "latent_avg": latent_avg, "args": argparse.Namespace(size=SIZE)}, path)

    loaded, loaded_latent_avg = load_rosinality_checkpoint(path, SIZE, STYLE_DIM, N_MLP, max_channels=MAX_CHANNELS)

    assert torch.equal(loaded_latent_avg, latent_avg)
    ws = torch.randn(2, generator.num_ws, STYLE_DIM)
    with torch.no_grad():
        assert torch.equal(loaded.synthesize(ws, noise_mode="const"), generator.synthesize(ws, noise_mode="const"))


def test_checkpoint_of_another_size_names_the_file_and_the_size_to_try(tmp_path) -> None:
    path = tmp_path / "size32.pt"
    torch.save({"g_ema": tiny_generator().state_dict()}, path)
    with pytest.raises(StyleGAN2CheckpointError) as error:
        load_rosinality_checkpoint(path, 64, STYLE_DIM, N_MLP, max_channels=MAX_CHANNELS)
    message = str(error.value)
    assert isinstance(error.value, ValueError) and isinstance(error.value, UserError)
    assert str(path) in message
    assert "missing convs.6, convs.7, to_rgbs.3, noises.noise_7, noises.noise_8 (18 keys)" in message
    assert "looks like size=32, style_dim=16, n_mlp=2, max_channels=8" in message


def test_checkpoint_with_another_channel_multiplier_suggests_it() -> None:
    torch.manual_seed(0)
    state = StyleGAN2Generator(64, 8, 1, channel_multiplier=1).state_dict()
    with pytest.raises(StyleGAN2CheckpointError, match=r"^ffhq\.pt: .*convs\.6\.conv\.weight.*channel_multiplier=1"):
        load_rosinality_checkpoint({"g_ema": state}, 64, 8, 1, channel_multiplier=2, source="ffhq.pt")


def test_modulated_conv_equals_a_per_sample_hand_computation() -> None:
    torch.manual_seed(0)
    in_channels, out_channels, style_dim = 3, 4, 5
    conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, demodulate=True)
    with torch.no_grad():
        conv.modulation.bias.add_(torch.randn(in_channels))
    input, styles = torch.randn(2, in_channels, 6, 7), torch.randn(2, style_dim)

    expected = []
    for sample in range(2):
        # Equalised linear layer: weight / sqrt(fan_in), bias as is (lr_mul 1).
        style = conv.modulation.weight @ styles[sample] / math.sqrt(style_dim) + conv.modulation.bias
        weight = conv.weight[0] / math.sqrt(in_channels * 9) * style[None, :, None, None]
        weight = weight * torch.rsqrt((weight**2).sum(dim=(1, 2, 3)) + 1e-8)[:, None, None, None]
        expected.append(F.conv2d(input[sample : sample + 1], weight, padding=1))

    torch.testing.assert_close(conv(input, styles), torch.cat(expected), rtol=1e-5, atol=1e-6)
    assert ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=True)(input, styles).shape == (2, 4, 12, 14)


def test_fused_leaky_relu_adds_the_bias_and_restores_the_gain() -> None:
    input, bias = torch.randn(2, 3, 4, 4), torch.randn(3)
    shifted = input + bias[None, :, None, None]
    expected = torch.where(shifted >= 0, shifted, 0.2 * shifted) * math.sqrt(2)
    torch.testing.assert_close(fused_leaky_relu(input, bias), expected)


def explicit_upfirdn2d(image: torch.Tensor, kernel: torch.Tensor, up: int, down: int, pad: tuple[int, int]) -> torch.Tensor:
    """One channel, by the definition: insert up - 1 zeros after each pixel, pad (crop if negative),
    convolve (kernel flipped), keep every down-th pixel."""
    height, width = image.shape
    upsampled = torch.zeros(height * up, width * up, dtype=torch.float64)
    upsampled[::up, ::up] = image
    padded = torch.zeros(height * up + sum(pad), width * up + sum(pad), dtype=torch.float64)
    for row in range(padded.shape[0]):
        for column in range(padded.shape[1]):
            source_row, source_column = row - pad[0], column - pad[0]
            if 0 <= source_row < height * up and 0 <= source_column < width * up:
                padded[row, column] = upsampled[source_row, source_column]
    kernel_height, kernel_width = kernel.shape
    out = torch.zeros((padded.shape[0] - kernel_height) // down + 1, (padded.shape[1] - kernel_width) // down + 1, dtype=torch.float64)
    for row in range(out.shape[0]):
        for column in range(out.shape[1]):
            for a in range(kernel_height):
                for b in range(kernel_width):
                    tap = kernel[kernel_height - 1 - a, kernel_width - 1 - b]
                    out[row, column] += padded[row * down + a, column * down + b] * tap
    return out


@pytest.mark.parametrize(
    ("kernel", "up", "down", "pad"),
    [
        (make_blur_kernel(BLUR_TAPS) * 4, 2, 1, (2, 1)),  # Upsample's setting
        (torch.arange(1.0, 17.0).reshape(4, 4), 1, 2, (1, -1)),  # asymmetric: flip and axes; cropping; downsampling
    ],
)
def test_upfirdn2d_equals_zero_insertion_then_fir(kernel: torch.Tensor, up: int, down: int, pad: tuple[int, int]) -> None:
    torch.manual_seed(0)
    input = torch.randn(2, 2, 4, 5, dtype=torch.float64)
    out = upfirdn2d(input, kernel.double(), up=up, down=down, pad=pad)
    expected = torch.stack(
        [torch.stack([explicit_upfirdn2d(channel, kernel.double(), up, down, pad) for channel in image]) for image in input]
    )
    torch.testing.assert_close(out, expected)


def test_blur_and_upsample_keep_a_constant_image_constant_inside() -> None:
    constant = torch.full((1, 2, 8, 8), 3.0)
    blurred = Blur(BLUR_TAPS, pad=(2, 1))(constant)
    assert blurred.shape == constant.shape
    torch.testing.assert_close(blurred[..., 2:-2, 2:-2], torch.full((1, 2, 4, 4), 3.0))
    upsampled = Upsample(BLUR_TAPS)(constant)
    assert upsampled.shape == (1, 2, 16, 16)
    torch.testing.assert_close(upsampled[..., 2:-2, 2:-2], torch.full((1, 2, 12, 12), 3.0))


def test_generator_maps_z_and_synthesizes_from_w_plus() -> None:
    generator = tiny_generator()
    z = torch.randn(3, generator.z_dim)
    w = generator.z_to_w(z)
    assert w.shape == (3, generator.w_dim)

    ws = w.detach().unsqueeze(1).repeat(1, generator.num_ws, 1) + 0.1 * torch.randn(3, generator.num_ws, generator.w_dim)
    ws.requires_grad_(True)
    images = generator.synthesize(ws, noise_mode="const")
    assert images.shape == (3, 3, SIZE, SIZE)
    assert torch.equal(images, generator.synthesize(ws, noise_mode="const"))
    assert not torch.equal(images, generator.synthesize(ws, noise_mode="random"))
    images.square().mean().backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all() and ws.grad[:, -1].abs().sum() > 0

    # rosinality's forward: a 3-D w+ with input_is_latent is used as is.
    image, latent = generator([ws.detach()], input_is_latent=True, randomize_noise=False, return_latents=True)
    assert torch.equal(image, images.detach()) and torch.equal(latent, ws.detach())
    with pytest.raises(ValueError, match="ws must have shape"):
        generator.synthesize(ws[:, 1:])


def test_generator_forward_mixes_and_truncates_styles_as_rosinality() -> None:
    generator = tiny_generator()
    z1, z2 = torch.randn(2, STYLE_DIM), torch.randn(2, STYLE_DIM)
    image, latent = generator([z1, z2], inject_index=3, return_latents=True)
    assert image.shape == (2, 3, SIZE, SIZE)
    w1, w2 = generator.z_to_w(z1), generator.z_to_w(z2)
    assert torch.equal(latent[:, :3], w1[:, None].expand(-1, 3, -1))
    assert torch.equal(latent[:, 3:], w2[:, None].expand(-1, generator.num_ws - 3, -1))
    assert generator([z1])[1] is None

    center = generator.mean_latent(64)
    assert center.shape == (1, STYLE_DIM)
    _, truncated = generator([z1], truncation=0.0, truncation_latent=center, return_latents=True)
    torch.testing.assert_close(truncated, center[:, None].expand(2, generator.num_ws, -1))


def test_discriminator_scores_each_image_and_passes_gradients() -> None:
    torch.manual_seed(0)
    discriminator = StyleGAN2Discriminator(SIZE, max_channels=MAX_CHANNELS)
    images = torch.randn(4, 3, SIZE, SIZE, requires_grad=True)
    scores = discriminator(images)
    assert scores.shape == (4, 1)
    scores.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="divisible by 4"):
        discriminator(torch.randn(6, 3, SIZE, SIZE))


def ada_state_dict(channels: dict[int, int], w_dim: int, mapping_layers: int) -> dict[str, torch.Tensor]:
    """A random NVlabs stylegan2-ada-pytorch G_ema state dict (skip architecture), keys and shapes
    as in its training/networks.py: weights (out, in, k, k), scalar noise strengths, 2-D noise."""
    resample_filter = torch.outer(torch.tensor(BLUR_TAPS), torch.tensor(BLUR_TAPS)) / 64  # setup_filter([1,3,3,1])
    state = {"mapping.w_avg": torch.randn(w_dim)}
    for index in range(mapping_layers):
        state |= {f"mapping.fc{index}.weight": torch.randn(w_dim, w_dim), f"mapping.fc{index}.bias": torch.randn(w_dim)}

    def layer(prefix: str, in_channels: int, out_channels: int, resolution: int) -> None:
        state.update({
            f"{prefix}.weight": torch.randn(out_channels, in_channels, 3, 3),
            f"{prefix}.noise_strength": torch.randn(()),
            f"{prefix}.bias": torch.randn(out_channels),
            f"{prefix}.resample_filter": resample_filter,
            f"{prefix}.noise_const": torch.randn(resolution, resolution),
            f"{prefix}.affine.weight": torch.randn(in_channels, w_dim),
            f"{prefix}.affine.bias": torch.randn(in_channels),
        })

    def torgb(prefix: str, in_channels: int) -> None:
        state.update({
            f"{prefix}.weight": torch.randn(3, in_channels, 1, 1),
            f"{prefix}.bias": torch.randn(3),
            f"{prefix}.affine.weight": torch.randn(in_channels, w_dim),
            f"{prefix}.affine.bias": torch.randn(in_channels),
        })

    state |= {"synthesis.b4.const": torch.randn(channels[4], 4, 4), "synthesis.b4.resample_filter": resample_filter}
    layer("synthesis.b4.conv1", channels[4], channels[4], 4)
    torgb("synthesis.b4.torgb", channels[4])
    for resolution in sorted(channels)[1:]:
        block = f"synthesis.b{resolution}"
        state[f"{block}.resample_filter"] = resample_filter
        layer(f"{block}.conv0", channels[resolution // 2], channels[resolution], resolution)
        layer(f"{block}.conv1", channels[resolution], channels[resolution], resolution)
        torgb(f"{block}.torgb", channels[resolution])
    return state


def test_stylegan2_ada_state_dict_converts_key_by_key() -> None:
    torch.manual_seed(0)
    channels = {4: 6, 8: 5, 16: 4}
    ada = ada_state_dict(channels, w_dim=4, mapping_layers=2)
    converted = convert_stylegan2_ada_state_dict(ada)

    generator, _ = load_rosinality_checkpoint({"g_ema": converted}, 16, 4, 2, channels=channels)  # strict
    assert torch.equal(converted["style.2.weight"], ada["mapping.fc1.weight"])
    assert torch.equal(converted["input.input"][0], ada["synthesis.b4.const"])
    assert torch.equal(converted["convs.2.conv.weight"][0], ada["synthesis.b16.conv0.weight"])
    assert torch.equal(converted["convs.3.conv.modulation.bias"], ada["synthesis.b16.conv1.affine.bias"])
    assert torch.equal(converted["convs.3.noise.weight"], ada["synthesis.b16.conv1.noise_strength"].reshape(1))
    assert torch.equal(converted["convs.3.activate.bias"], ada["synthesis.b16.conv1.bias"])
    assert torch.equal(converted["noises.noise_4"][0, 0], ada["synthesis.b16.conv1.noise_const"])
    assert torch.equal(converted["to_rgbs.1.bias"].flatten(), ada["synthesis.b16.torgb.bias"])
    # NVlabs applies the upsampling gain (4) at run time; rosinality stores it in the kernel.
    assert torch.equal(converted["to_rgbs.1.upsample.kernel"], generator.to_rgbs[1].upsample.kernel)
    assert torch.equal(converted["convs.0.conv.blur.kernel"], generator.convs[0].conv.blur.kernel)

    with pytest.raises(StyleGAN2CheckpointError, match="mapping.embed.weight"):
        convert_stylegan2_ada_state_dict(ada | {"mapping.embed.weight": torch.randn(4, 10)})
