"""The baselines a NAS reviewer asks for, beside the search's pick at each budget (``bench_vs_mseries.py
--arms``). Four arms per budget, the same recipe, epochs and seeds, scored on the test split:

(a) ``m``: the budget's M model at the task's 96 px (what the budget is);
(b) ``scaled``: the M-series member at the resolution that fills the budget. Every member M0–M5 at
    the two largest resolutions of the task's space the table puts near the budget is timed beside
    the budget's M model in one window; a member qualifies at its largest resolution that measures
    within the budget (+3%). Each qualifying one trains with the first seed; the one with the best
    **validation** top-1 is the arm and trains the other seeds (chosen as a user would, never on test);
(c) ``random``: random search at the same training budget: the search with ``--estimator random``
    (K archs drawn at random from those that fit, short-trained and picked by the same validation rule
    as the default search);
(d) ``found``: the default search.

Nothing here trains or searches by itself: bench_vs_mseries.py hands in its ``train`` and ``search``
steps, so each arm is run, resumed and recorded the way the headline comparison is.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path

from effvit_nas import Arch, SearchSpace
from effvit_nas.latency.deploy import DeploymentRule
from effvit_nas.latency.meter import LatencyMeter
from effvit_nas.latency.table import LatencyTable

MEMBERS = ("m0", "m1", "m2", "m3", "m4", "m5")
NEAR = 1.15  # a resolution whose prediction is this far over the budget may still measure within it
ARMS = ("m", "scaled", "random", "found")
RANDOM_VARIANT, RANDOM_ARGS = "random", ["--estimator", "random"]


def scaled_candidates(table: LatencyTable, space: SearchSpace, budget_ms: float,
                      members: tuple[str, ...] = MEMBERS) -> dict[str, Arch]:
    """Per member, its two largest resolutions of ``space`` predicted within ``NEAR`` x the budget."""
    candidates = {}
    for member in members:
        arch = Arch.preset(member)
        near = [r for r in sorted(space.resolutions)
                if table.predict_ms(arch.replace(resolution=r)) <= NEAR * budget_ms]
        for side in near[-2:]:
            candidates[f"{member}@{side}"] = arch.replace(resolution=side, name=f"{arch.name}@{side}")
    return candidates


def time_scaled(table: LatencyTable, model: str, model_arch: Arch, candidates: dict[str, Arch], seconds: float,
                noise: float, budget_in_models: float = 1.0) -> dict[str, dict]:
    """Every candidate beside the budget's M model in one window, judged by ``scaled_rows``."""
    # the budget's own model among the candidates is the budget: it is not timed a second time, where the
    # same network can measure a few percent apart from itself in one window and so miss its own budget
    others = {name: arch for name, arch in candidates.items() if arch.arch_id != model_arch.arch_id}
    with LatencyMeter(table.runtime, rule=DeploymentRule(min_seconds=seconds)) as meter:
        run = meter.archs({model: model_arch, **others})
    if run.failures:
        raise SystemExit(f"every M-series network must run as deployed, but {run.failures}")
    measured = {name: run.timings[name].latency_ms for name in others}
    return {"model_ms": run.timings[model].latency_ms, "reference_ms": run.reference_ms,
            "budget_in_models": budget_in_models,
            "rows": scaled_rows(table, model_arch, run.timings[model].latency_ms, measured, candidates, noise,
                                budget_in_models)}


def scaled_rows(table: LatencyTable, model_arch: Arch, model_ms: float, measured_ms: dict[str, float],
                candidates: dict[str, Arch], noise: float, budget_in_models: float) -> dict[str, dict]:
    """Per member, its largest resolution within the budget: its figure over the model's (timed in one
    window) at most ``budget_in_models`` x (1 + ``noise``), the budget being that many times the model's own
    figure (1: the budget is the model). A candidate that is the model itself is the budget (ratio 1)."""
    rows = {}
    for name, arch in candidates.items():
        is_the_model = arch.arch_id == model_arch.arch_id
        ms = model_ms if is_the_model else measured_ms[name]
        rows[name] = {"measured_ms": ms, "ratio_to_m": ms / model_ms, "predicted_ms": table.predict_ms(arch),
                      "arch": arch.to_dict(), "is_the_model": is_the_model,
                      "within": ms / model_ms <= budget_in_models * (1 + noise)}
    best_side: dict[str, str] = {}
    for name, row in sorted(rows.items(), key=lambda kv: Arch.from_dict(kv[1]["arch"]).resolution):
        if row["within"]:
            best_side[name.split("@")[0]] = name
    for name, row in rows.items():
        row["qualifies"] = name in best_side.values()
    return rows


def pick_scaled(qualifying: dict[str, Path], train_first_seed: Callable[[str, Path], dict]) -> str:
    """The qualifying network with the best validation top-1 after the first seed's training."""
    val = {name: train_first_seed(name, path)["val_top1"] for name, path in qualifying.items()}
    return max(val, key=lambda name: (val[name], name))


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def gain_over(baseline: list[float], found: list[float]) -> dict:
    """The found arm's mean gain over ``baseline`` and that difference's standard error (Welch)."""
    (b_mean, b_sd), (f_mean, f_sd) = mean_sd(baseline), mean_sd(found)
    se = (math.sqrt(b_sd ** 2 / len(baseline) + f_sd ** 2 / len(found))
          if len(baseline) > 1 and len(found) > 1 else float("nan"))
    return {"gain": f_mean - b_mean, "se": se, "beyond_se": f_mean - b_mean > se}


def arms_markdown(rows: list[dict]) -> str:
    # cost: (b) the training that chose it, (c) and (d) the family search; wall minutes on 2 cores
    lines = ["| budget | (a) M at 96 px | (b) M-series at the resolution that fills it | (c) random search, same "
             "training | (d) default search | (d) - (b) ± SE | (d) - (c) ± SE | measured / budget (b) / (c) / (d) "
             "| cost (b) / (c) / (d), min |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        arm = r["arms"]
        cell = {name: f"{a['label']}: {a['mean']:.2f} ± {a['sd']:.2f}" for name, a in arm.items()}
        cost = " / ".join(f"{arm[n]['cost_wall_min']:.0f}" if arm[n].get("cost_wall_min") is not None else "?"
                          for n in ("scaled", "random", "found"))
        measured = " / ".join(f"{arm[n]['measured_of_budget']:.2f}" if arm[n].get("measured_of_budget") else "not timed"
                              for n in ("scaled", "random", "found"))
        lines.append(f"| {r['model'].upper()} ({r['budget_ms']:.3f} ms) | {cell['m']} | {cell['scaled']} | "
                     f"{cell['random']} | {cell['found']} | {r['vs_scaled']['gain']:+.2f} ± {r['vs_scaled']['se']:.2f}"
                     f" | {r['vs_random']['gain']:+.2f} ± {r['vs_random']['se']:.2f} | {measured} | {cost} |")
    return "\n".join(lines)


ARM_STYLE = {"m": ("(a) M at 96 px", "tab:grey", "s"),
             "scaled": ("(b) M-series at the side that fills it", "tab:blue", "D"),
             "random": ("(c) random search, same training", "tab:green", "^"),
             "found": ("(d) default search", "tab:red", "o")}


def plot_arms(rows: list[dict], path: Path, task: str) -> None:
    """Test top-1 (mean ± sd over seeds) of each arm per budget, arms side by side within a budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for offset, (arm, (label, colour, marker)) in enumerate(ARM_STYLE.items()):
        xs = [i + (offset - 1.5) * 0.15 for i in range(len(rows))]
        ys = [r["arms"][arm]["mean"] for r in rows]
        sds = [0 if math.isnan(r["arms"][arm]["sd"]) else r["arms"][arm]["sd"] for r in rows]
        ax.errorbar(xs, ys, yerr=sds, color=colour, marker=marker, linestyle="none", capsize=3, label=label)
    ax.set_xticks(range(len(rows)), [f"{r['model'].upper()}\n{r['budget_ms']:.3f} ms" for r in rows])
    ax.set(xlabel="latency budget (the M model at 96 px, measured here)", ylabel="test top-1 % (mean ± sd over seeds)",
           title=f"{task}: four arms at each budget")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
