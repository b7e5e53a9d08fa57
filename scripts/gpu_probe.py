"""GPU measurements for scripts/gpu_check.sh that are not a table: each writes one small JSON.

    python scripts/gpu_probe.py info OUT.json          GPU name, driver, power limit, torch/CUDA/cuDNN versions
    python scripts/gpu_probe.py throughput OUT.json    training img/s (bf16 autocast, AdamW), ours vs timm
    python scripts/gpu_probe.py memory-format OUT.json what channels_last buys M0's inference (fp16)
    python scripts/gpu_probe.py largest OUT.json       the default space's largest arch at batch 2048

Timing: CUDA events around back-to-back calls after warm-up, rounds interleaved between the things
compared, medians reported with every round kept.
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


PROBES = {"info": info, "throughput": throughput, "memory-format": memory_format, "largest": largest}


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
