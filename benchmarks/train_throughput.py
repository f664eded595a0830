#!/usr/bin/env python
"""Training throughput and peak memory of `+experiment=bicycle_reference`: Lightning vs plain PyTorch.

Usage (from the repository root)::

    python benchmarks/train_throughput.py                      # CPU defaults, a few minutes on 2 cores
    python benchmarks/train_throughput.py --sizes 256 --batch-sizes 2 --iterations 20 --repeats 3
    python benchmarks/train_throughput.py --device cuda --precision bf16-mixed --channels-last --compile
    python benchmarks/train_throughput.py --profile 3          # cProfile of the Lightning path only

Each (configuration, method, repeat) runs in a fresh subprocess (``--worker``), so the peak RSS
of one run (``getrusage`` is monotonic over a process) does not hide another's. Both methods use
the same Hydra config, the same initial weights (same seed, same instantiation), the same
random batches through the same DataLoader, the same per-iteration RNG seeding (dropout masks,
z) and the same update (junyanz ``optimize_parameters``):

1. ``lightning``: ``BicycleGAN`` (schedule engine, manual optimisation) under ``lightning.Trainer``;
2. ``plain``: a hand-written PyTorch loop over the module's own nets with four Adam optimisers,
   as ``reference_loop`` in tests/test_bicyclegan_reference.py (``backward(inputs=...)`` instead
   of toggling ``requires_grad``: same gradients, and safe under ``torch.compile``).

Only the timed iterations count: the clock starts when the last warm-up iteration ends (at the
start of the first batch when ``--warmup 0``) and stops when the last iteration ends, so it
includes fetching batches and every per-step hook, but not start-up, compilation of the first
iterations or the end of the epoch. The final weights of both methods are hashed: equal hashes
show that both did exactly the same update (expected on CPU in 32-bit).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
RESULT_MARKER = "BENCH_RESULT "
METHODS = ("lightning", "plain")
TARGET_OVERHEAD_PERCENT = 5.0


# ------------------------------------------------------------------------------------------------
# arguments
# ------------------------------------------------------------------------------------------------
def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.replace(",", " ").split()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_int_list, default=[256, 128], help="image sizes (crop_size), e.g. '256,128'")
    parser.add_argument(
        "--batch-sizes", type=_int_list, default=[2, 8],
        help="batch size per size (same length as --sizes, or one value for all); even (batch split)",
    )
    parser.add_argument("--iterations", type=int, default=8, help="timed iterations per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations before the timed ones")
    parser.add_argument("--repeats", type=int, default=3, help="runs per (config, method), interleaved; medians reported")
    parser.add_argument("--methods", default="lightning,plain", help="comma-separated subset of lightning,plain")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch.set_num_threads in every run")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--precision", default="32-true", help="trainer.precision, e.g. bf16-mixed (GPU)")
    parser.add_argument("--channels-last", action="store_true", help="model.channels_last=true")
    parser.add_argument("--compile", action="store_true", help="model.compile=true (torch.compile of each net)")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark=True (CUDA)")
    parser.add_argument(
        "--worker-env", action="append", default=[], metavar="KEY=VALUE",
        help="environment variable for every run (repeatable), e.g. MALLOC_TRIM_THRESHOLD_=4294967296",
    )
    parser.add_argument(
        "--allocator", choices=("kept", "glibc"), default="kept",
        help="kept: glibc reuses freed memory, as the entry points set it (bicyclegan_pl.runtime.allocator); "
        "glibc: the C library's defaults",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and of the data")
    parser.add_argument("--override", action="append", default=[], help="extra Hydra override (repeatable)")
    parser.add_argument(
        "--max-other-cores", type=float, default=0.25,
        help="CPU runs during which other processes kept more cores busy are left out of the medians when possible",
    )
    parser.add_argument("--target", type=float, default=TARGET_OVERHEAD_PERCENT, help="overhead target in %%")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the overhead target is not met")
    parser.add_argument("--json", type=Path, help="also write all results to this JSON file")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per worker run")
    parser.add_argument(
        "--profile", type=int, metavar="N", default=0,
        help="instead of the benchmark: cProfile N timed Lightning iterations of the first config in this "
        "process and print the top cumulative non-torch entries",
    )
    # internal: one measured run
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if len(args.batch_sizes) == 1:
        args.batch_sizes = args.batch_sizes * len(args.sizes)
    if len(args.batch_sizes) != len(args.sizes):
        parser.error("--batch-sizes needs one value, or one per --sizes value")
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not args.methods or any(m not in METHODS for m in args.methods):
        parser.error(f"--methods must be a subset of {','.join(METHODS)}")
    if any("=" not in item for item in args.worker_env):
        parser.error("--worker-env takes KEY=VALUE")
    if args.iterations < 1 or args.warmup < 0 or args.repeats < 1:
        parser.error("need --iterations >= 1, --warmup >= 0, --repeats >= 1")
    return args


def config_overrides(args: argparse.Namespace, size: int, batch_size: int) -> list[str]:
    return [
        "+experiment=bicycle_reference",
        f"data.crop_size={size}",
        f"data.batch_size={batch_size}",
        f"seed={args.seed}",
        f"trainer.precision={args.precision}",
        f"model.channels_last={str(args.channels_last).lower()}",
        f"model.compile={str(args.compile).lower()}",
        *args.override,
    ]


# ------------------------------------------------------------------------------------------------
# one measured run (in a fresh process)
# ------------------------------------------------------------------------------------------------
def compose_config(overrides: list[str]):
    """The config `python -m bicyclegan_pl.train <overrides>` gets (as tests/helpers.py composes it)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from bicyclegan_pl.config import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = "/tmp/unused"
        cfg.hydra.runtime.cwd = str(REPO)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def make_loader(count: int, batch_size: int, size: int, input_nc: int, output_nc: int, seed: int):
    """`count` batches of uniform [-1, 1] noise, served in order by a plain DataLoader."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    generator = torch.Generator().manual_seed(seed + 1)
    a = torch.rand(count * batch_size, input_nc, size, size, generator=generator) * 2 - 1
    b = torch.rand(count * batch_size, output_nc, size, size, generator=generator) * 2 - 1

    class Pairs(Dataset):
        def __len__(self) -> int:
            return len(a)

        def __getitem__(self, index: int):
            return {"A": a[index], "B": b[index]}

    return DataLoader(Pairs(), batch_size=batch_size, shuffle=False, num_workers=0)


def weights_digest(model) -> str:
    import hashlib

    digest = hashlib.sha256()
    for net in (model.generator, model.encoder, model.discriminator_vae, model.discriminator_clr):
        for tensor in net.state_dict().values():
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def busy_cpu_seconds() -> float:
    """CPU seconds all processes of the machine have used so far (user, system, irq, steal)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_usage() -> tuple[float, float, int]:
    """This process's (user CPU s, system CPU s, minor page faults) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime, usage.ru_minflt


class _Marks:
    """Timestamps: values[0] = start of batch 0, values[k] = end of batch k-1 (device synchronised).

    With each timestamp, the machine's and this process's CPU time, so a run can tell how many
    cores other processes took while it was timed (a shared machine makes CPU timings unreliable).
    """

    def __init__(self, sync):
        self.sync = sync
        self.values: list[float] = []
        self.cpu: list[tuple[float, tuple[float, float, int]]] = []

    def start(self) -> None:
        self.sync()
        self.values.append(time.perf_counter())
        self.cpu.append((busy_cpu_seconds(), own_usage()))

    end = start

    def other_cores(self, first: int) -> float:
        """Average number of cores busy with other processes between values[first] and the end."""
        (busy_0, (user_0, sys_0, _)), (busy_1, (user_1, sys_1, _)) = self.cpu[first], self.cpu[-1]
        own = (user_1 - user_0) + (sys_1 - sys_0)
        return max(0.0, (busy_1 - busy_0) - own) / (self.values[-1] - self.values[first])

    def own_delta(self, first: int) -> tuple[float, float, int]:
        """(user CPU s, system CPU s, minor page faults) of this process from values[first] to the end."""
        before, after = self.cpu[first][1], self.cpu[-1][1]
        return tuple(b - a for a, b in zip(before, after))


class _SectionTimer:
    """Wall time of each call of wrapped callables, per name (nested calls of one name count once)."""

    def __init__(self, sync):
        self.sync = sync
        self.totals: dict[str, list[float]] = {}
        self._depth: dict[str, int] = {}

    def wrap(self, name: str, function):
        self.totals.setdefault(name, [])
        self._depth.setdefault(name, 0)

        @functools.wraps(function)
        def wrapped(*a, **k):
            if self._depth[name]:
                return function(*a, **k)
            self._depth[name] += 1
            start = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                if name == "training_step":
                    self.sync()
                self.totals[name].append(time.perf_counter() - start)
                self._depth[name] -= 1

        return wrapped


def run_lightning(model, cfg, loader, args, device, marks: _Marks, sections: _SectionTimer | None, profiler=None) -> dict:
    import lightning as L

    total = args.warmup + args.iterations

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:
                marks.start()
            if profiler is not None and batch_idx == args.warmup:
                profiler.enable()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            marks.end()
            if profiler is not None and batch_idx == total - 1:
                profiler.disable()

    if sections is not None:
        # per-step cost of the module's logging calls and of the step itself (Lightning's loop
        # costs the rest of each iteration); instance attributes shadow the class methods
        model.training_step = sections.wrap("training_step", model.training_step)
        model.log_dict = sections.wrap("logging", model.log_dict)
        model.log = sections.wrap("logging", model.log)
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision=cfg.trainer.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        max_epochs=1,
        limit_train_batches=total,
        callbacks=[Timer()],
    )
    trainer.fit(model, train_dataloaders=loader)
    if model.iteration != total:
        raise RuntimeError(f"Lightning ran {model.iteration} iterations, expected {total}")
    return {}


def run_plain(model, cfg, loader, args, device, marks: _Marks) -> dict:
    """junyanz optimize_parameters() written out by hand, over the module's nets."""
    import torch
    import torch.nn.functional as F

    from bicyclegan_pl.runtime.rng import iteration_rng  # seeds dropout/z exactly as the module does

    G, E, D, D2 = model.generator, model.encoder, model.discriminator_vae, model.discriminator_clr
    nets = (G, E, D, D2)
    model.to(device)
    if cfg.model.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.model.compile:
        for net in nets:
            net.compile(backend=cfg.model.compile_backend)
    opt_cfg = cfg.model.optimizer
    make = lambda net: torch.optim.Adam(net.parameters(), lr=opt_cfg.lr, betas=tuple(opt_cfg.betas))  # noqa: E731
    opt_G, opt_E, opt_D, opt_D2 = make(G), make(E), make(D), make(D2)
    params_EG = [*E.parameters(), *G.parameters()]
    params_G = list(G.parameters())
    w = cfg.model.loss_weights
    nz, seed = cfg.model.nz, cfg.model.seed
    if cfg.model.gan_mode != "lsgan" or not cfg.model.batch_split or w.get("mode_seeking"):
        raise SystemExit("the plain loop implements the reference update only (lsgan, batch_split, no mode seeking)")

    precision = str(cfg.trainer.precision)
    if precision.startswith("bf16") and "mixed" in precision:
        autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16)  # noqa: E731
    elif precision.startswith("16") and "mixed" in precision:
        raise SystemExit("the plain loop has no GradScaler: use 32-true or bf16-mixed")
    else:
        autocast = nullcontext

    def gan_loss(predictions, real: bool):
        # lsgan over the scales of a multi-scale PatchGAN, Python sum (as the reference)
        return sum(F.mse_loss(p, torch.ones_like(p) if real else torch.zeros_like(p)) for p in predictions)

    def prepare(x):
        x = x.to(device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if cfg.model.channels_last else x

    model.train()
    for iteration, batch in enumerate(loader):
        if iteration == 0:
            marks.start()
        with iteration_rng(seed, 0, iteration, device) as generator, autocast():
            real_A, real_B = prepare(batch["A"]), prepare(batch["B"])
            half = real_A.shape[0] // 2
            real_A_encoded, real_B_encoded, real_B_random = real_A[:half], real_B[:half], real_B[half:]
            eps = torch.randn(half, nz, generator=generator).to(device)
            z_random = torch.randn(half, nz, generator=generator).to(device)
            # forward()
            mu, logvar = E(real_B_encoded)
            z_encoded = eps.mul(logvar.mul(0.5).exp()).add(mu)
            fake_B_encoded = G(real_A_encoded, z_encoded)
            fake_B_random = G(real_A_encoded, z_random)
            mu2, _ = E(fake_B_random)
            # update_G_and_E(): GAN + GAN2 + L1 + KL into E and G, then z L1 into G only
            opt_E.zero_grad(set_to_none=True)
            opt_G.zero_grad(set_to_none=True)
            loss_G_GAN = gan_loss(D(fake_B_encoded), True) * w.vae_gan
            loss_G_GAN2 = gan_loss(D2(fake_B_random), True) * w.clr_gan
            loss_G_L1 = F.l1_loss(fake_B_encoded, real_B_encoded) * w.vae_l1
            kl = torch.sum(mu.pow(2).add(logvar.exp()).mul(-1).add(1).add(logvar)).mul(-0.5)
            loss_kl = kl * w.kl
            (loss_G_GAN + loss_G_GAN2 + loss_G_L1 + loss_kl).backward(inputs=params_EG, retain_graph=True)
            loss_z_L1 = torch.mean(torch.abs(mu2 - z_random)) * w.clr_latent
            loss_z_L1.backward(inputs=params_G)
            opt_E.step()
            opt_G.step()
            # free the E/G graphs before the D steps, as the schedule engine does (it drops the
            # results of an optimiser once it steps); the D steps use the fakes detached
            fake_B_encoded, fake_B_random = fake_B_encoded.detach(), fake_B_random.detach()
            del mu, logvar, z_encoded, mu2, loss_G_GAN, loss_G_GAN2, loss_G_L1, kl, loss_kl, loss_z_L1
            # update_D(): D on (fake_B_encoded, real_B_encoded), D2 on (fake_B_random, real_B_random)
            for net, optimizer, fake, real in (
                (D, opt_D, fake_B_encoded, real_B_encoded),
                (D2, opt_D2, fake_B_random, real_B_random),
            ):
                optimizer.zero_grad(set_to_none=True)
                loss_D = gan_loss(net(fake.detach()), False) + gan_loss(net(real), True)
                loss_D.backward(inputs=list(net.parameters()))
                optimizer.step()
        del fake_B_encoded, fake_B_random, loss_D
        marks.end()
    total = args.warmup + args.iterations
    if iteration + 1 != total:
        raise RuntimeError(f"plain loop ran {iteration + 1} iterations, expected {total}")
    return {}


def build(args: argparse.Namespace):
    import torch
    from hydra.utils import instantiate

    torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda" and args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True  # both paths (a Trainer without benchmark= keeps it)
    cfg = compose_config(config_overrides(args, args.size, args.batch_size))
    torch.manual_seed(args.seed)  # same initial weights for both methods
    model = instantiate(cfg.model, _convert_="all")
    loader = make_loader(
        args.warmup + args.iterations, args.batch_size, args.size, cfg.data.input_nc, cfg.data.output_nc, args.seed
    )
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    return cfg, model, loader, device, sync


def worker(args: argparse.Namespace) -> None:
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    if args.allocator == "kept":
        from bicyclegan_pl.runtime.allocator import keep_freed_memory

        keep_freed_memory()
    cfg, model, loader, device, sync = build(args)
    marks = _Marks(sync)
    sections = _SectionTimer(sync) if args.method == "lightning" else None
    rss_before = current_rss_bytes()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if args.method == "lightning":
        run_lightning(model, cfg, loader, args, device, marks, sections)
    else:
        run_plain(model, cfg, loader, args, device, marks)
    rss_peak = peak_rss_bytes()
    times = marks.values
    per_iteration = [b - a for a, b in zip(times, times[1:])]
    seconds = times[-1] - times[args.warmup]
    result = {
        "method": args.method,
        "size": args.size,
        "batch_size": args.batch_size,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "device": str(device),
        "threads_set": args.threads,
        "threads_after": torch.get_num_threads(),
        "allocator": args.allocator,
        "seconds": seconds,
        "images_per_s": args.batch_size * args.iterations / seconds,
        "other_cores_busy": marks.other_cores(args.warmup),
        "user_cpu_seconds": marks.own_delta(args.warmup)[0],
        "system_cpu_seconds": marks.own_delta(args.warmup)[1],
        "minor_page_faults": marks.own_delta(args.warmup)[2],
        "cpu_cores": os.cpu_count(),
        "iteration_seconds": per_iteration,
        "rss_before_mib": rss_before / 2**20,
        "rss_peak_mib": rss_peak / 2**20,
        "rss_growth_mib": (rss_peak - rss_before) / 2**20,
        "weights_digest": weights_digest(model),
    }
    if device.type == "cuda":
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    if sections is not None:
        timed = slice(args.warmup, None)
        result["training_step_seconds"] = sum(sections.totals["training_step"][timed])
        # logging calls per iteration: one log_dict + one log per progress-bar term
        calls = len(sections.totals["logging"]) // max(1, len(sections.totals["training_step"]))
        result["logging_seconds"] = sum(sections.totals["logging"][args.warmup * calls :])
    print(RESULT_MARKER + json.dumps(result), flush=True)


# ------------------------------------------------------------------------------------------------
# profile of the Lightning path
# ------------------------------------------------------------------------------------------------
def _is_torch_entry(key) -> bool:
    filename, _, function = key
    if "/torch/" in filename or "/torchvision/" in filename:
        return True
    if filename == "~":  # builtins: keep the Python ones, drop torch's C functions and methods
        return "torch" in function or "Tensor" in function or "_C." in function or "run_backward" in function
    return False


def profile(args: argparse.Namespace) -> None:
    import cProfile
    import pstats
    import warnings

    warnings.filterwarnings("ignore")
    args.size, args.batch_size = args.sizes[0], args.batch_sizes[0]
    cfg, model, loader, device, sync = build(args)
    marks = _Marks(sync)
    profiler = cProfile.Profile()
    run_lightning(model, cfg, loader, args, device, marks, None, profiler=profiler)
    seconds = marks.values[-1] - marks.values[args.warmup]
    stats = pstats.Stats(profiler)
    entries = [(key, value) for key, value in stats.stats.items() if not _is_torch_entry(key)]
    print(f"\ncProfile of {args.iterations} Lightning iterations at {args.size} px, batch {args.batch_size}: {seconds:.2f} s")
    print("top cumulative entries that are not torch code (cumulative includes the torch work they call):")
    print(f"{'cumulative s':>12} {'per iter ms':>11} {'own s':>8} {'calls':>8}  function")
    for (filename, line, function), (_, calls, own, cumulative, _) in sorted(entries, key=lambda e: -e[1][3])[:30]:
        where = filename.replace(str(REPO) + "/", "").split("site-packages/")[-1]
        print(f"{cumulative:12.3f} {1e3 * cumulative / args.iterations:11.2f} {own:8.3f} {calls:8d}  {where}:{line}({function})")
    print("\ntop own (exclusive) time, non-torch entries (own time includes tensor operators such as x + y, "
          "which cProfile does not list separately, and tensors freed when a reference drops):")
    for (filename, line, function), (_, calls, own, cumulative, _) in sorted(entries, key=lambda e: -e[1][2])[:12]:
        where = filename.replace(str(REPO) + "/", "").split("site-packages/")[-1]
        print(f"{own:8.3f} s {1e3 * own / args.iterations:8.2f} ms/iter {calls:8d}  {where}:{line}({function})")
    own_by_package: dict[str, float] = {}
    for (filename, _, _), (_, _, own, _, _) in entries:
        if "site-packages/" in filename:
            package = filename.split("site-packages/")[-1].split("/")[0]
        elif str(REPO) in filename:
            package = filename.replace(str(REPO) + "/", "").split("/")[0]
        else:
            package = "python stdlib/builtins"
        own_by_package[package] = own_by_package.get(package, 0.0) + own
    print("\nown (exclusive) Python time by package over the profiled iterations:")
    for package, own in sorted(own_by_package.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {package:28s} {own:8.3f} s  ({1e3 * own / args.iterations:.2f} ms/iter, {100 * own / seconds:.2f} %)")


# ------------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------------
def run_worker(args: argparse.Namespace, method: str, size: int, batch_size: int) -> dict:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", "--method", method,
        "--size", str(size), "--batch-size", str(batch_size),
        "--iterations", str(args.iterations), "--warmup", str(args.warmup),
        "--threads", str(args.threads), "--device", args.device, "--precision", args.precision,
        "--seed", str(args.seed), "--allocator", args.allocator,
        *(["--channels-last"] if args.channels_last else []),
        *(["--compile"] if args.compile else []),
        *(["--cudnn-benchmark"] if args.cudnn_benchmark else []),
        *[f"--override={o}" for o in args.override],
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.update(item.split("=", 1) for item in args.worker_env)
    start = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=args.timeout)
    lines = [line for line in process.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if process.returncode != 0 or not lines:
        sys.stderr.write(process.stdout[-4000:] + process.stderr[-8000:])
        raise SystemExit(f"worker failed (exit {process.returncode}): {' '.join(command)}")
    result = json.loads(lines[-1][len(RESULT_MARKER) :])
    result["process_seconds"] = time.perf_counter() - start
    return result


def _median(values):
    return statistics.median(values) if values else float("nan")


def summarize(args: argparse.Namespace, results: list[dict], total_seconds: float) -> bool:
    device = results[0]["device"]
    cuda = device.startswith("cuda")
    memory_key = "cuda_peak_mib" if cuda else "rss_growth_mib"
    rows, all_met, notes, dropped_any = [], True, [], False
    for size, batch_size in zip(args.sizes, args.batch_sizes):
        every = {
            m: [r for r in results if r["method"] == m and r["size"] == size and r["batch_size"] == batch_size]
            for m in args.methods
        }
        # runs timed while other processes took CPU are unreliable: leave them out of the medians
        # when every method keeps at least one clean run
        clean = {m: [r for r in rs if cuda or r["other_cores_busy"] <= args.max_other_cores] for m, rs in every.items()}
        use_clean = all(clean.values())
        per_method = clean if use_clean else every
        dropped = sum(len(every[m]) - len(per_method[m]) for m in every)
        dropped_any |= dropped > 0 or not use_clean
        seconds = {m: _median([r["seconds"] for r in rs]) for m, rs in per_method.items()}
        overhead = None
        if "lightning" in seconds and "plain" in seconds:
            overhead = 100 * (seconds["lightning"] / seconds["plain"] - 1)
            all_met &= overhead <= args.target
            per_iteration = {
                m: _median([t for r in rs for t in r["iteration_seconds"][r["warmup"] :]]) for m, rs in per_method.items()
            }
            robust = 100 * (per_iteration["lightning"] / per_iteration["plain"] - 1)
            # the fastest iteration of each method: noise only ever adds time, so this is the
            # estimate least affected by a busy or jittery machine
            fastest = {m: min(t for r in rs for t in r["iteration_seconds"][r["warmup"] :]) for m, rs in per_method.items()}
            best = 100 * (fastest["lightning"] / fastest["plain"] - 1)
            digests = {r["weights_digest"] for rs in every.values() for r in rs}
            lightning_runs = per_method["lightning"]
            step = sum(r["training_step_seconds"] for r in lightning_runs)
            logging = sum(r["logging_seconds"] for r in lightning_runs)
            timed = sum(r["seconds"] for r in lightning_runs)
            n_iter = sum(r["iterations"] for r in lightning_runs)
            mean_iteration = timed / n_iter
            outside = (timed - step) / n_iter
            log_cost = logging / n_iter
            faults = {
                m: sum(r["minor_page_faults"] for r in rs) / sum(r["iterations"] for r in rs) for m, rs in per_method.items()
            }
            system = {
                m: sum(r["system_cpu_seconds"] for r in rs) / sum(r["iterations"] for r in rs) for m, rs in per_method.items()
            }
            caveats = [f"{dropped} contended run(s) left out"] if dropped else []
            if not use_clean:
                caveats.append("no clean run of some method: medians over ALL runs")
            notes.append(
                f"- {size} px, batch {batch_size}: " + "".join(f"{c}; " for c in caveats) +
                f"overhead from the median per-iteration times {robust:+.1f} %"
                + (
                    f", from the fastest iterations {best:+.1f} % ({fastest['lightning']:.2f} vs {fastest['plain']:.2f} s); "
                    if use_clean
                    else "; "
                ) +
                f"Lightning loop outside training_step {1e3 * outside:.1f} ms/iter ({100 * outside / mean_iteration:.2f} %), "
                f"self.log/log_dict inside it {1e3 * log_cost:.1f} ms/iter ({100 * log_cost / mean_iteration:.2f} %); "
                f"final weights {'identical' if len(digests) == 1 else 'DIFFERENT'} across methods and repeats; "
                f"minor page faults/iter lightning {faults['lightning'] / 1e3:.0f}k vs plain {faults['plain'] / 1e3:.0f}k, "
                f"system CPU {system['lightning']:.2f} vs {system['plain']:.2f} s/iter"
            )
        for method in args.methods:
            runs = per_method[method]
            ips = _median([r["images_per_s"] for r in runs])
            memory = _median([r[memory_key] for r in runs])
            spread = f"{min(r['images_per_s'] for r in runs):.3g}-{max(r['images_per_s'] for r in runs):.3g}"
            cell = "" if method == "plain" else ("n/a" if overhead is None else f"{overhead:+.1f} %")
            rows.append(f"| {size} | {batch_size} | {method} | {ips:.3f} ({spread}) | {memory:.0f} | {cell} |")
    memory_label = "peak CUDA memory allocated" if cuda else "peak RSS growth during training"
    print()
    print(
        f"bicycle_reference training throughput on {device} ({args.threads} threads, precision {args.precision}"
        f"{', channels_last' if args.channels_last else ''}{', compile' if args.compile else ''}"
        f"{', cudnn.benchmark' if args.cudnn_benchmark else ''}{''.join(', ' + e for e in args.worker_env)}); "
        f"{args.warmup} warm-up + {args.iterations} timed iterations, median of {args.repeats} interleaved runs"
    )
    print()
    print("| size | batch | method | images/s (min-max) | peak memory MiB | overhead vs plain |")
    print("|---:|---:|---|---:|---:|---:|")
    print("\n".join(rows))
    print()
    print(
        f"images/s = batch x timed iterations / their wall time; overhead = lightning time / plain time - 1 "
        f"(medians); peak memory: {memory_label}"
        + ("" if cuda else " (peak RSS minus the RSS after building model and data; fresh process per run)")
    )
    if not cuda:
        absolute = {m: _median([r["rss_peak_mib"] for r in results if r["method"] == m]) for m in args.methods}
        print("absolute peak RSS (median over all runs): " + ", ".join(f"{m} {v:.0f} MiB" for m, v in absolute.items()))
    others = [r["other_cores_busy"] for r in results]
    print(
        f"other processes kept {statistics.mean(others):.2f} of {results[0]['cpu_cores']} cores busy on average "
        f"during the timed iterations (max {max(others):.2f} in one run)"
    )
    if not cuda and dropped_any:
        print(
            f"WARNING: the machine was shared while timing (runs with other processes above {args.max_other_cores:g} "
            "cores are left out of the medians where possible). With every core running a torch thread, other "
            "processes stall OpenMP regions and CPU timings swing by several times: re-run on an idle machine."
        )
    threads = {r["threads_after"] for r in results}
    if threads != {args.threads}:
        print(f"WARNING: torch threads after the runs were {sorted(threads)}, set {args.threads}")
    print("\n".join(notes))
    if notes:
        verdict = "MET" if all_met else "NOT MET"
        print(f"\nframework overhead target <= {args.target:g} %: {verdict}")
    print(f"total runtime: {total_seconds:.0f} s")
    return all_met


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    if args.profile:
        args.iterations = args.profile
        profile(args)
        return 0
    start = time.perf_counter()
    configs = list(zip(args.sizes, args.batch_sizes))
    runs = [
        (method, size, batch_size)
        for repeat in range(args.repeats)
        for size, batch_size in configs
        # alternate which method goes first, so drifts of the machine hit both alike
        for method in (args.methods if repeat % 2 == 0 else args.methods[::-1])
    ]
    results = []
    for index, (method, size, batch_size) in enumerate(runs, 1):
        result = run_worker(args, method, size, batch_size)
        results.append(result)
        memory = result.get("cuda_peak_mib", result["rss_growth_mib"])
        print(
            f"[{index}/{len(runs)}] {size} px, batch {batch_size}, {method:9s}: {result['images_per_s']:.3f} images/s, "
            f"{result['seconds'] / result['iterations']:.2f} s/iter, peak memory {memory:.0f} MiB, "
            f"other processes {result['other_cores_busy']:.2f} cores (process {result['process_seconds']:.0f} s)",
            flush=True,
        )
    met = summarize(args, results, time.perf_counter() - start)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2))
    # informational by default: a noisy shared machine should not fail `make bench`
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    sys.exit(main())
