"""Networks: shapes, value ranges, where z enters, skip connections, initialisation, input checks."""

import math

import pytest
import torch
from torch import nn

from bicyclegan_pl.losses.adversarial import discriminator_adversarial_loss, generator_adversarial_loss
from bicyclegan_pl.nets import (
    GlobalDiscriminator,
    MultiscalePatchDiscriminator,
    PatchDiscriminator,
    PlainGenerator,
    ResNetEncoder,
    ResnetLatentGenerator,
    UnetGenerator,
    get_norm_layer,
    init_weights,
)
from bicyclegan_pl.nets.generators import UnetBlock

NGF = 8
GENERATOR_KINDS = ["unet_all", "unet_input", "unet_all_bilinear", "resnet_latent", "plain"]


def make_generator(kind: str, input_nc: int, nz: int, size: int, output_nc: int = 3) -> nn.Module:
    num_downs = int(math.log2(size))
    if kind == "unet_all":
        return UnetGenerator(input_nc, output_nc, nz, num_downs, ngf=NGF, use_dropout=True, where_add="all")
    if kind == "unet_input":
        return UnetGenerator(input_nc, output_nc, nz, num_downs, ngf=NGF, use_dropout=True, where_add="input")
    if kind == "unet_all_bilinear":
        return UnetGenerator(input_nc, output_nc, nz, num_downs, ngf=NGF, upsample="bilinear", where_add="all")
    if kind == "resnet_latent":
        return ResnetLatentGenerator(input_nc, output_nc, nz, ngf=NGF, n_blocks=2)
    return PlainGenerator(input_nc, output_nc, nz, num_downs, ngf=NGF)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


@pytest.mark.parametrize("kind", GENERATOR_KINDS)
@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("nz", [0, 8])
@pytest.mark.parametrize("input_nc", [1, 3])
def test_generator_output_shape_and_tanh_range(kind: str, size: int, nz: int, input_nc: int) -> None:
    torch.manual_seed(0)
    # Weights of std 1 drive the pre-tanh activations far beyond +-1, so only a final tanh keeps
    # the output in range.
    generator = init_weights(make_generator(kind, input_nc, nz, size), "normal", gain=1.0).eval()
    x = torch.randn(2, input_nc, size, size)
    z = torch.randn(2, nz) if nz else None
    with torch.no_grad():
        output = generator(x, z)
    assert output.shape == (2, 3, size, size)
    assert torch.isfinite(output).all()
    assert output.min() >= -1.0 and output.max() <= 1.0
    assert output.abs().max() > 0.9  # saturated, i.e. the range check above was not trivially met


@pytest.mark.parametrize("kind", ["unet_all", "unet_input", "resnet_latent", "plain"])
def test_z_changes_the_output_and_same_z_gives_same_output(kind: str) -> None:
    torch.manual_seed(0)
    generator = make_generator(kind, 3, 8, 32).eval()
    x = torch.randn(2, 3, 32, 32)
    z_first, z_second = torch.randn(2, 8), torch.randn(2, 8)
    with torch.no_grad():
        first, first_again, second = generator(x, z_first), generator(x, z_first), generator(x, z_second)
    assert torch.equal(first, first_again)
    assert (first - second).abs().max() > 1e-4


@pytest.mark.parametrize("where_add, z_still_matters", [("all", True), ("input", False)])
def test_z_reaches_inner_blocks_only_with_where_add_all(where_add: str, z_still_matters: bool) -> None:
    """Cut z out of the first convolution: only 'all' still feeds z to the inner blocks."""
    torch.manual_seed(0)
    generator = UnetGenerator(3, 3, 8, 5, ngf=NGF, where_add=where_add).eval()
    outermost_conv = generator.model.down[0]
    with torch.no_grad():
        outermost_conv.weight[:, 3:] = 0.0  # the 8 z channels follow the 3 image channels
        x = torch.randn(2, 3, 32, 32)
        difference = (generator(x, torch.randn(2, 8)) - generator(x, torch.randn(2, 8))).abs().max()
    assert (difference > 1e-4) == z_still_matters


@pytest.mark.parametrize("where_add", ["all", "input"])
def test_unet_block_input_channels(where_add: str) -> None:
    input_nc, nz, ngf, num_downs = 1, 8, 4, 8
    generator = UnetGenerator(input_nc, 3, nz, num_downs, ngf=ngf, use_dropout=True, where_add=where_add)
    blocks = [module for module in generator.modules() if isinstance(module, UnetBlock)]  # outermost first
    assert len(blocks) == num_downs
    expected_inputs = [input_nc] + [ngf * min(2 ** (depth - 1), 8) for depth in range(1, num_downs)]
    for depth, (block, block_input) in enumerate(zip(blocks, expected_inputs)):
        gets_z = where_add == "all" or depth == 0
        assert block.down[0].in_channels == block_input + (nz if gets_z else 0)
        assert block.down[0].out_channels == ngf * min(2**depth, 8)


def test_unet_dropout_follows_up_norm_in_the_three_widest_inner_blocks() -> None:
    generator = UnetGenerator(3, 3, 8, 8, ngf=4, use_dropout=True)
    blocks = [module for module in generator.modules() if isinstance(module, UnetBlock)]
    with_dropout = [depth for depth, block in enumerate(blocks) if isinstance(block.up[-1], nn.Dropout)]
    assert with_dropout == [4, 5, 6]  # the 512-channel levels of unet_256, not the innermost (7)
    for depth in with_dropout:
        assert isinstance(blocks[depth].up[-2], nn.InstanceNorm2d)
    assert not any(isinstance(module, nn.Dropout) for module in UnetGenerator(3, 3, 8, 8, ngf=4).modules())


def test_unet_innermost_has_no_down_norm_and_outermost_ends_in_tanh() -> None:
    blocks = [module for module in UnetGenerator(3, 3, 8, 6, ngf=4).modules() if isinstance(module, UnetBlock)]
    assert [type(layer) for layer in blocks[-1].down] == [nn.Conv2d]
    assert [type(layer) for layer in blocks[1].down] == [nn.Conv2d, nn.InstanceNorm2d]
    assert isinstance(blocks[0].up[-1], nn.Tanh)


def _convolutions(module: nn.Module) -> list[nn.Module]:
    return [layer for layer in module.modules() if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d))]


def test_plain_generator_has_no_skip_connections() -> None:
    input_nc, nz = 3, 8
    convolutions = _convolutions(PlainGenerator(input_nc, 3, nz, 6, ngf=NGF))
    assert len(convolutions) == 12  # 6 down, 6 up: same depth as the U-Net
    assert convolutions[0].in_channels == input_nc + nz
    for previous, layer in zip(convolutions, convolutions[1:]):
        assert layer.in_channels == previous.out_channels  # nothing concatenated in between
    assert convolutions[-1].out_channels == 3


def test_unet_generator_concatenates_skips() -> None:
    blocks = [module for module in UnetGenerator(3, 3, 8, 6, ngf=NGF).modules() if isinstance(module, UnetBlock)]
    for block in blocks[:-1]:  # every level but the innermost receives [up, skip] from below
        up_convolution = next(layer for layer in block.up if isinstance(layer, nn.ConvTranspose2d))
        assert up_convolution.in_channels == 2 * block.down[0].out_channels
    level_three_input = torch.randn(1, 4 * NGF, 8, 8)  # what level 3 sees of a 64 px image
    level_three_output = blocks[3].eval()(level_three_input, torch.randn(1, 8))
    assert level_three_output.shape == (1, 8 * NGF, 8, 8)  # [up (4 ngf), skip (4 ngf)]
    assert torch.equal(level_three_output[:, 4 * NGF :], level_three_input)  # with z, the skip is the raw input


def test_first_block_norm_removes_exactly_one_instance_norm() -> None:
    def count_instance_norms(generator: nn.Module) -> int:
        return sum(isinstance(module, nn.InstanceNorm2d) for module in generator.modules())

    with_norm = ResnetLatentGenerator(3, 3, 8, ngf=NGF, n_blocks=2, first_block_norm=True)
    without_norm = ResnetLatentGenerator(3, 3, 8, ngf=NGF, n_blocks=2, first_block_norm=False)
    assert count_instance_norms(with_norm) - count_instance_norms(without_norm) == 1
    assert [type(layer) for layer in without_norm.encoder[:3]] == [nn.ReflectionPad2d, nn.Conv2d, nn.ReLU]
    assert isinstance(with_norm.encoder[2], nn.InstanceNorm2d)


def test_resnet_latent_generator_feeds_z_to_the_image_and_every_residual_block() -> None:
    generator = ResnetLatentGenerator(3, 3, 8, ngf=NGF, n_blocks=3)
    assert generator.encoder[1].in_channels == 3 + 8
    assert [(block.latent_shift.in_features, block.latent_shift.out_features) for block in generator.blocks] == [
        (8, 4 * NGF)
    ] * 3


@pytest.mark.parametrize("first_block_norm, input_z_matters", [(True, False), (False, True)])
def test_first_block_instance_norm_erases_the_z_concatenated_to_the_image(
    first_block_norm: bool, input_z_matters: bool
) -> None:
    """Seed 000's ablation: with the first InstanceNorm, z at the input has no effect at all."""
    torch.manual_seed(0)
    generator = ResnetLatentGenerator(3, 3, 8, ngf=NGF, n_blocks=2, first_block_norm=first_block_norm).eval()
    with torch.no_grad():
        for block in generator.blocks:  # leave the image input as z's only way in
            block.latent_shift.weight.zero_()
        x = torch.randn(2, 3, 32, 32)
        difference = (generator(x, torch.randn(2, 8)) - generator(x, torch.randn(2, 8))).abs().max()
    assert (difference > 1e-4) == input_z_matters


@pytest.mark.parametrize("size", [32, 64, 128])
def test_encoder_returns_mu_and_logvar(size: int) -> None:
    torch.manual_seed(0)
    encoder = ResNetEncoder(3, 8, nef=8, n_blocks=5)
    mu, logvar = encoder(torch.randn(2, 3, size, size))
    assert mu.shape == (2, 8) and logvar.shape == (2, 8)
    assert not torch.allclose(mu, logvar)  # two separate heads


def test_encoder_without_vae_head_returns_mu_only_and_rejects_tiny_images() -> None:
    encoder = ResNetEncoder(1, 8, nef=8, n_blocks=4, vae_like=False)
    assert encoder(torch.randn(2, 1, 32, 32)).shape == (2, 8)
    with pytest.raises(ValueError, match="8x8"):
        encoder(torch.randn(2, 1, 8, 8))


def test_multiscale_discriminator_returns_one_map_per_scale() -> None:
    size, ndf, n_layers, num_D = 64, 8, 3, 2
    discriminator = MultiscalePatchDiscriminator(3, ndf=ndf, n_layers=n_layers, num_D=num_D)
    predictions = discriminator(torch.randn(2, 3, size, size))
    assert isinstance(predictions, list) and len(predictions) == num_D
    scale_size = size
    for scale, prediction in enumerate(predictions):
        if scale > 0:
            scale_size = conv_output_size(scale_size, 3, 2, 1)  # AvgPool2d(3, stride 2, padding 1)
        expected = scale_size
        for _ in range(n_layers):
            expected = conv_output_size(expected, 4, 2, 1)
        expected = conv_output_size(conv_output_size(expected, 4, 1, 1), 4, 1, 1)
        assert prediction.shape == (2, 1, expected, expected)
    assert [prediction.shape[-1] for prediction in predictions] == [6, 2]
    first_convolutions = [_convolutions(scale)[0] for scale in discriminator.scales]
    assert [convolution.out_channels for convolution in first_convolutions] == [ndf, round(ndf / 2)]


def test_single_scale_discriminators() -> None:
    predictions = MultiscalePatchDiscriminator(3, ndf=8, num_D=1)(torch.randn(2, 3, 64, 64))
    assert isinstance(predictions, list) and len(predictions) == 1 and predictions[0].shape == (2, 1, 6, 6)
    assert PatchDiscriminator(3, ndf=8)(torch.randn(2, 3, 64, 64)).shape == (2, 1, 6, 6)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_global_discriminator_gives_one_score_per_image_that_depends_on_all_of_it(size: int) -> None:
    """Seed 001's "vanilla" D: strided convs down to 4x4, then a linear layer: (N, 1) at any
    configured size; each image's score has a gradient at every pixel of that image (a 70x70
    PatchGAN's scores each see only their receptive field) and none at the other images'."""
    torch.manual_seed(0)
    n_layers = int(math.log2(size // 4))
    discriminator = GlobalDiscriminator(3, image_size=size, ndf=8, n_layers=n_layers)
    images = torch.randn(3, 3, size, size, requires_grad=True)
    scores = discriminator(images)
    assert scores.shape == (3, 1)
    (gradient,) = torch.autograd.grad(scores[1].sum(), images)
    assert torch.count_nonzero(gradient[[0, 2]]) == 0
    assert (gradient[1].abs().sum(0) > 0).float().mean() > 0.99  # (almost) every pixel of its image counts
    for mode in ("lsgan", "vanilla", "hinge"):  # the adversarial losses take its tensor as a map
        fake, real = discriminator(images[:2]), discriminator(images[1:])
        for loss in (generator_adversarial_loss(fake, mode), discriminator_adversarial_loss(fake, real, mode)):
            assert loss.dim() == 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match=f"built for {size}x{size}"):
        discriminator(torch.randn(1, 3, size // 2, size // 2))
    with pytest.raises(ValueError, match="2x2"):
        GlobalDiscriminator(3, image_size=size, n_layers=n_layers + 2)


def test_init_weights_xavier_matches_reference_formula() -> None:
    torch.manual_seed(0)
    generator = ResnetLatentGenerator(3, 3, 8, ngf=16, n_blocks=2, norm="batch")
    assert init_weights(generator, "xavier", gain=0.02) is generator
    checked = 0
    for layer in _convolutions(generator):
        if layer.weight.numel() < 4096:  # too few samples for a 10 % std estimate
            continue
        receptive_field = layer.weight[0, 0].numel()
        fan_in, fan_out = layer.weight.shape[1] * receptive_field, layer.weight.shape[0] * receptive_field
        expected_std = 0.02 * math.sqrt(2.0 / (fan_in + fan_out))
        assert abs(layer.weight.std().item() / expected_std - 1) < 0.1
        checked += 1
    assert checked >= 4
    biases = [layer.bias for layer in _convolutions(generator) if layer.bias is not None]
    assert biases and all(torch.count_nonzero(bias) == 0 for bias in biases)
    batch_norms = [module for module in generator.modules() if isinstance(module, nn.BatchNorm2d)]
    for batch_norm in batch_norms:
        assert torch.count_nonzero(batch_norm.bias) == 0
        assert 0 < (batch_norm.weight - 1).abs().max() < 0.1  # drawn from N(1, 0.02)


def test_init_weights_rejects_unknown_type() -> None:
    with pytest.raises(ValueError, match="init_type"):
        init_weights(nn.Linear(2, 2), "uniform")


@pytest.mark.parametrize("generator_class", [UnetGenerator, PlainGenerator])
def test_too_many_downsamplings_raise_with_sizes(generator_class: type[nn.Module]) -> None:
    generator = generator_class(3, 3, 8, 7, ngf=4)
    with pytest.raises(ValueError, match=r"128.*64x64"):
        generator(torch.randn(1, 3, 64, 64), torch.randn(1, 8))


def test_missing_or_misshaped_z_is_rejected() -> None:
    generator = UnetGenerator(3, 3, 8, 5, ngf=4)
    with pytest.raises(ValueError, match="nz=8"):
        generator(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(1, 8\)"):
        generator(torch.randn(1, 3, 32, 32), torch.randn(1, 4))


def test_norm_layer_factory() -> None:
    instance_norm = get_norm_layer("instance")(4)
    assert isinstance(instance_norm, nn.InstanceNorm2d)
    assert not instance_norm.affine and not instance_norm.track_running_stats
    batch_norm = get_norm_layer("batch")(4)
    assert isinstance(batch_norm, nn.BatchNorm2d) and batch_norm.affine
    assert isinstance(get_norm_layer("none")(4), nn.Identity)
    with pytest.raises(ValueError, match="group"):
        get_norm_layer("group")
