"""Weight initialisation as in junyanz `init_weights` (BicycleGAN and pix2pix/CycleGAN).

The reference trains from this initialisation (BicycleGAN: xavier with the unusually small gain
0.02), so matching it matters for reproducing its results, not only its architecture.
"""

from torch import nn
from torch.nn import init

INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


def init_weights(net: nn.Module, init_type: str = "xavier", gain: float = 0.02) -> nn.Module:
    """Initialise every convolution, transposed convolution and linear layer of `net` in place.

    Weights follow `init_type` (gain scales 'normal' (as the std), 'xavier' and 'orthogonal';
    'kaiming' ignores it, as in the reference), biases become 0. BatchNorm2d weights are drawn
    from N(1, gain) and their biases set to 0. Returns `net` so it can wrap a constructor call.
    """
    if init_type not in INIT_TYPES:
        raise ValueError(f"unknown init_type {init_type!r}; expected one of {INIT_TYPES}")

    def initialise(module: nn.Module) -> None:
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            if init_type == "normal":
                init.normal_(module.weight, 0.0, gain)
            elif init_type == "xavier":
                init.xavier_normal_(module.weight, gain=gain)
            elif init_type == "kaiming":
                init.kaiming_normal_(module.weight, a=0, mode="fan_in")
            else:
                init.orthogonal_(module.weight, gain=gain)
            if module.bias is not None:
                init.constant_(module.bias, 0.0)
        elif isinstance(module, nn.BatchNorm2d) and module.affine:
            init.normal_(module.weight, 1.0, gain)
            init.constant_(module.bias, 0.0)

    net.apply(initialise)
    return net
