"""Data-parallel training for manually optimised GANs.

Lightning's DDP wraps the whole LightningModule in one ``DistributedDataParallel``. Its reducer
expects every parameter that a backward pass can reach to receive a gradient, which GAN
schedules violate on purpose (a generator phase backpropagates *through* the discriminator
without updating it; Lightning-AI/pytorch-lightning#20328, #20866). So this strategy sets up the process
group like ``ddp`` but does not wrap the module: the schedule engine averages the gradients of
exactly the optimiser it is about to step (:func:`average_gradients`).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry


class ManualSyncDDPStrategy(DDPStrategy):
    """DDP process group without the DDP wrapper; parameters start equal (broadcast from rank 0)."""

    strategy_name = "ddp_manual_sync"

    def configure_ddp(self) -> None:
        broadcast_module_states(self.model)

    @classmethod
    def register_strategies(cls, strategy_registry: StrategyRegistry) -> None:
        strategy_registry.register(cls.strategy_name, cls, description="DDP without module wrapper (GANs)")
        strategy_registry.register(
            "ddp_spawn_manual_sync", cls, description="spawned DDP without module wrapper", start_method="spawn"
        )


# Lightning registers only its own strategies' names; ours are registered on import, so
# `trainer.strategy=ddp_manual_sync` (and `ddp_spawn_manual_sync`) resolve like `ddp`.
if ManualSyncDDPStrategy.strategy_name not in StrategyRegistry:
    ManualSyncDDPStrategy.register_strategies(StrategyRegistry)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast_module_states(module: torch.nn.Module, source: int = 0) -> None:
    """Copy rank ``source``'s parameters and buffers to every rank, as the constructor of
    ``DistributedDataParallel`` does. One broadcast per tensor, once per fit: torch's bucketed
    helper for it (``torch.distributed.utils._sync_module_states``) is private."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in (*module.parameters(), *module.buffers()):
            dist.broadcast(tensor, source)


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce (mean) the gradients of ``parameters`` across ranks in one flat buffer."""
    if not is_distributed():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(dist.get_world_size())
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def all_ranks_true(flag: bool, device: torch.device) -> bool:
    """True only if ``flag`` is true on every rank (keeps ranks in step when one must skip)."""
    if not is_distributed():
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return bool(tensor.item())
