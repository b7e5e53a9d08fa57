"""GPU measurements for scripts/gpu_check.sh that are not a table: each writes one small JSON.

    python scripts/gpu_probe.py info OUT.json          GPU name, driver, power limit, torch/CUDA/cuDNN versions
    python scripts/gpu_probe.py throughput OUT.json    training img/s (bf16 autocast, AdamW), ours vs timm
    python scripts/gpu_probe.py memory-format OUT.json what channels_last buys M0's inference (fp16)
    python scripts/gpu_probe.py largest OUT.json       the default space's largest arch at batch 2048
    python scripts/gpu_probe.py fresh-process OUT.json where a fresh CUDA interpreter spends its seconds
    python scripts/gpu_probe.py batch-scaling OUT.json the rule's figure at batch 256 and 2048, 3 processes each
    python scripts/gpu_probe.py cuda-graph OUT.json    eager torch vs the torch-cudagraph runtime, batch 256 and 2048
    python scripts/gpu_probe.py supernet-copies OUT.json host-to-device copies and step time of supernet training,
                                                       subnet indices cached on the GPU vs made afresh every step

Timing: the probes of a deployed file time it as the package does (``measure_deployed``: the
deployment rule, each file in processes of its own, one window); the others use CUDA events around
back-to-back calls after warm-up, rounds interleaved between the things compared.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from effvit_nas import Arch, SearchSpace, build_model


def events_ms(call: Callable[[], object], calls: int) -> float:
    """Mean ms per call of ``calls`` back-to-back calls, timed on the GPU's own clock."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        call()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / calls


def interleaved(candidates: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, measure in candidates.items():
            results[name].append(measure())
    return results


def info() -> dict:
    query = "name,driver_version,power.limit,memory.total,clocks.max.sm"
    try:
        smi = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                             capture_output=True, text=True, check=False)
        fields = (dict(zip(query.split(","), (v.strip() for v in smi.stdout.split(",")), strict=False))
                  if smi.returncode == 0 else smi.stderr.strip())
    except FileNotFoundError:
        fields = "nvidia-smi is not installed"
    props = torch.cuda.get_device_properties(0)
    return {"nvidia_smi": fields,
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "device": props.name, "multiprocessors": props.multi_processor_count,
            "memory_gib": round(props.total_memory / 2**30, 1)}


def throughput(batch: int = 256, resolution: int = 224, rounds: int = 5, steps: int = 10) -> dict:
    """The training step ``effnas train`` runs on a GPU (bf16 autocast, channels_last, AdamW), per model."""
    import timm

    torch.backends.cudnn.benchmark = True
    models = {f"effvit-nas {name.upper()}": build_model(Arch.preset(name), num_classes=1000)
              for name in ("m0", "m2", "m4")}
    models["timm efficientvit_m0"] = timm.create_model("efficientvit_m0", num_classes=1000)
    images = torch.randn(batch, 3, resolution, resolution, device="cuda").contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device="cuda")
    prepared = {}
    for name, model in models.items():
        model = model.cuda().to(memory_format=torch.channels_last).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step(model=model, optimizer=optimizer) -> None:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(5):  # cuDNN's algorithm search and the allocator's first growth
            step()
        prepared[name] = step
    ms = interleaved({name: (lambda s=step: events_ms(s, steps)) for name, step in prepared.items()}, rounds)
    return {"batch": batch, "resolution": resolution, "precision": "bf16 autocast, channels_last, AdamW",
            "steps_per_round": steps, "rounds_ms_per_step": ms,
            "img_per_s": {name: batch / statistics.median(v) * 1000 for name, v in ms.items()},
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def memory_format(batch: int = 256, rounds: int = 5, calls: int = 20) -> dict:
    """M0 at 224 px, fp16 inference: the torch runtime uses channels_last on CUDA (torch_eager.py says why)."""
    torch.backends.cudnn.benchmark = True
    model = build_model(Arch.preset("m0")).eval().fuse().to(device="cuda", dtype=torch.float16)
    x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=torch.float16)
    formats = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}

    def timed(fmt: torch.memory_format) -> float:
        m, xi = model.to(memory_format=fmt), x.contiguous(memory_format=fmt)
        with torch.inference_mode():
            for _ in range(5):
                m(xi)
            return events_ms(lambda: m(xi), calls)

    rounds_ms = interleaved({name: (lambda f=fmt: timed(f)) for name, fmt in formats.items()}, rounds)
    median = {name: statistics.median(v) for name, v in rounds_ms.items()}
    return {"network": "m0 at 224 px", "batch": batch, "dtype": "float16", "median_ms": median,
            "rounds_ms": rounds_ms, "channels_last_speedup": median["contiguous"] / median["channels_last"]}


def largest(batch: int = 2048) -> dict:
    """Whether the paper's GPU batch fits for the biggest network a search can pick, and what fp16 buys
    one of its blocks (the tables time blocks in the table's dtype; fp32 would be a different table)."""
    arch = SearchSpace.default().largest()
    model = build_model(arch).eval().fuse().cuda()
    result: dict = {"arch": arch.to_dict(), "batch": batch, "resolution": arch.resolution,
                    "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    torch.cuda.reset_peak_memory_stats()
    x = torch.randn(batch, 3, arch.resolution, arch.resolution, device="cuda", dtype=torch.float16)
    half = model.to(dtype=torch.float16, memory_format=torch.channels_last)
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            half(x.contiguous(memory_format=torch.channels_last))
        torch.cuda.synchronize()
        result["fp16_forward_fits"] = True
        result["fp16_first_call_s"] = time.perf_counter() - started
    except torch.cuda.OutOfMemoryError as exc:
        result["fp16_forward_fits"] = False
        result["error"] = str(exc).splitlines()[0]
    result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del x
    torch.cuda.empty_cache()
    block = model.stages[0].blocks[0]
    side = arch.stage_resolutions[0]
    timings = {}
    for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        b = block.to(dtype=dtype, memory_format=torch.contiguous_format)
        xi = torch.randn(batch, arch.widths[0], side, side, device="cuda", dtype=dtype)
        with torch.inference_mode():
            for _ in range(3):
                b(xi)
            timings[name] = statistics.median(events_ms(lambda b=b, xi=xi: b(xi), 5) for _ in range(3))
    result["first_block"] = {"input": [batch, arch.widths[0], side, side], "ms": timings,
                             "fp16_speedup": timings["fp32"] / timings["fp16"]}
    return result


def fresh_process(rounds: int = 2) -> dict:
    """Wall seconds of the steps a fresh timed process takes on CUDA (torch does not fork once CUDA is
    up, so each deployed file is timed in a new interpreter), each in its own new process, rounds
    interleaved: the interpreter, importing torch, starting CUDA."""
    steps = {
        "python": [sys.executable, "-c", "pass"],
        "import torch": [sys.executable, "-c", "import torch"],
        "import torch + CUDA up": [sys.executable, "-c", "import torch; torch.zeros(1, device='cuda')"],
    }
    seconds: dict[str, list] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, command in steps.items():
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            seconds[name].append(round(time.perf_counter() - started, 3) if done.returncode == 0 else
                                 f"exit {done.returncode}: {done.stderr.strip()[-300:]}")
    return {"rounds_s": seconds}


def _micro_d1(batch: int, runtime: str = "torch") -> tuple:
    """The smallest network of gpu_check.sh's micro space (the arch a first verify measured at twice its
    prediction), exported for a CUDA runtime: (config, (path, input shape))."""
    import tempfile
    from pathlib import Path

    from effvit_nas.latency.runtimes import runtime_class

    runtime_cls = runtime_class(runtime, "cuda")
    config = runtime_cls.config_for("cuda", batch_size=batch)
    arch = Arch.from_dict({"schema_version": 1, "name": "micro_d1", "resolution": 128, "widths": [64, 128, 192],
                           "depths": [1, 1, 1], "heads": [4, 4, 4], "key_dims": [16, 16, 16], "ffn_ratios": [2, 2, 2],
                           "window_sizes": [7, 7, 7], "kernels": [5, 5, 5, 5]})
    shape = (batch, 3, arch.resolution, arch.resolution)
    path = runtime_cls(config).export(build_model(arch).eval().fuse(), Path(tempfile.mkdtemp()) / "d1.pt", shape)
    return config, (path, shape)


def _by_the_rule(config, files: dict, copies: int, seconds: float) -> dict:
    """``files`` timed as the package times every deployed file (``measure_deployed``: each in a process of
    its own, all in one window), each in ``copies`` processes: the spread between processes of one file
    says whether a fresh process's figure depends on the process."""
    from effvit_nas.latency.deploy import DeploymentRule, measure_deployed

    run = measure_deployed(config, {f"{name} #{i + 1}": f for name, f in files.items() for i in range(copies)},
                           DeploymentRule(min_seconds=seconds))
    figures = {name: [run.timings[f"{name} #{i + 1}"].latency_ms for i in range(copies)
                      if f"{name} #{i + 1}" in run.timings] for name in files}
    return {"figures_ms": figures, "spread_max_over_min": {k: max(v) / min(v) for k, v in figures.items() if v},
            "timings": {k: t.to_dict() for k, t in run.timings.items()}, "failures": run.failures,
            "seconds": run.seconds}


def batch_scaling(copies: int = 3, seconds: float = 30.0) -> dict:
    """The rule's figure of the micro arch of depth 1 at batch 256 and at the paper's 2048, each in
    ``copies`` processes of one window: where the GPU, not the host's kernel launches, sets the time (it
    grows with the batch, and the processes agree)."""
    config, _ = _micro_d1(2048)
    files = {f"batch {batch}": _micro_d1(batch)[1] for batch in (256, 2048)}
    return {"network": "micro_d1 at 128 px, float16", **_by_the_rule(config, files, copies, seconds)}


def cuda_graph(copies: int = 3, seconds: float = 30.0) -> dict:
    """Eager torch against the torch-cudagraph runtime (the forward replayed as one CUDA graph), the micro
    arch of depth 1 at batch 256 and 2048, each runtime in its own window of the rule."""
    results = {}
    for runtime in ("torch", "torch-cudagraph"):
        config, _ = _micro_d1(2048, runtime)
        files = {f"batch {batch}": _micro_d1(batch, runtime)[1] for batch in (256, 2048)}
        results[runtime] = _by_the_rule(config, files, copies, seconds)
    return {"network": "micro_d1 at 128 px, float16", **results}


def supernet_copies(steps: int = 20, batch: int = 64) -> dict:
    """Host-to-device copies per supernet training step and its time, 4 archs in turn, with every
    subnet's index tensors cached on the GPU (the code as it is, at its best: archs that recur, as the
    sandwich's two ends do; its random middle archs are mostly new, and a new arch makes its indices
    once) against made afresh each step (the cache cleared before every step: what every step paid
    before the cache, plus rebuilding the arch's weightless skeleton). Rounds interleaved; the cache is
    filled again before each cached measurement."""
    from pathlib import Path

    import numpy as np

    from effvit_nas.supernet.network import Supernet

    space = SearchSpace.from_yaml(Path(__file__).resolve().parent.parent / "tests" / "data" / "tiny_space.yaml")
    net = Supernet.from_space(space, num_classes=10).cuda().train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(4)]
    size = max(space.resolutions)
    images = torch.randn(batch, 3, size, size, device="cuda")
    labels = torch.randint(0, 10, (batch,), device="cuda")

    def step(i: int, cached: bool) -> None:
        if not cached:
            net._subnets.clear()  # noqa: SLF001 - the probe emulates the code before the cache
        arch = archs[i % len(archs)]
        x = torch.nn.functional.interpolate(images, size=arch.resolution) if arch.resolution != size else images
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(net(x, arch), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def fill_cache() -> None:
        for arch in archs:
            net._subnet(arch)  # noqa: SLF001 - the probe measures the cache's effect

    def copies(cached: bool) -> int:
        from torch.profiler import ProfilerActivity, profile

        if cached:
            fill_cache()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for i in range(len(archs)):
                step(i, cached)
            torch.cuda.synchronize()
        return sum(1 for e in prof.events() if "HtoD" in e.name) // len(archs)

    def wall_ms(cached: bool) -> float:  # host wall time: blocking copies stall the host, which events would not see
        if cached:
            fill_cache()
        torch.cuda.synchronize()
        started = time.perf_counter()
        for i in range(steps):
            step(i, cached)
        torch.cuda.synchronize()
        return (time.perf_counter() - started) / steps * 1000

    for cached in (True, False):  # warm-up: cuDNN's algorithm search, the allocator, the cache itself
        for i in range(len(archs)):
            step(i, cached)
    per_step = {"cached on the GPU": copies(True), "made afresh each step": copies(False)}
    ms = interleaved({"cached on the GPU": lambda: wall_ms(True), "made afresh each step": lambda: wall_ms(False)}, 5)
    return {"space": space.name, "batch": batch, "archs_cycled": len(archs), "steps_per_round": steps,
            "precision": "bf16 autocast, AdamW", "host_to_device_copies_per_step": per_step,
            "rounds_ms_per_step": ms, "median_ms_per_step": {k: statistics.median(v) for k, v in ms.items()}}


PROBES = {"info": info, "throughput": throughput, "memory-format": memory_format, "largest": largest,
          "fresh-process": fresh_process, "supernet-copies": supernet_copies,
          "batch-scaling": batch_scaling, "cuda-graph": cuda_graph}


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in PROBES:
        sys.exit(f"usage: gpu_probe.py {{{','.join(PROBES)}}} OUT.json")
    if not torch.cuda.is_available():
        sys.exit("gpu_probe.py: torch sees no CUDA GPU")
    result = PROBES[sys.argv[1]]()
    with open(sys.argv[2], "w") as out:
        json.dump(result, out, indent=1, default=str)
    print(json.dumps(result, default=str)[:1500])


if __name__ == "__main__":
    main()
