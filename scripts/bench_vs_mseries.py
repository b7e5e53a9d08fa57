"""The headline check: at the same measured latency, do the networks a search finds train to a
higher test top-1 than the hand-designed M-series?

Run:  python scripts/bench_vs_mseries.py [--seeds 3] [--epochs 12] [--models m0,m1,m2,m3]
      python scripts/bench_vs_mseries.py --variant zico --search-args="--estimator zico"
      python scripts/bench_vs_mseries.py --variant zico --search-args="--estimator zico" --search-only
      python scripts/bench_vs_mseries.py --tiny          (the pipeline in minutes: CI's version)
      python scripts/bench_vs_mseries.py --arms --work runs/bench-arms [--seeds 3]   (the four arms, below)

``--variant`` names a search configuration compared on the same budgets, recipe and M-series runs
(the M models train once per work dir); the default variant, ``found``, is what a user gets with
the default settings. ``--search-only`` stops after the search and prints what it picked.

On the built-in ``shapes`` task (train/val/test, 96 px; effvit_nas/train/shapes.py) and its search
space (the shipped space `shapes`), with the task's latency table (onnxruntime, batch 1, 2 threads,
built on this machine with ``effnas table build``):

1. budgets: M0..M3 at the task's 96 px, exported and timed under the deployment rule in one window;
   each one's figure (the fast state) is a budget;
2. search: one ``effnas search`` family over those budgets with the default settings plus the task's
   data and space (what a user runs);
3. train: every M model and every found variant with the same recipe and epochs, ``--seeds`` seeds
   each; the figure is top-1 on the ``test`` split, which no search, estimator or epoch sees;
4. verify: every network with ``effnas verify`` (the deployment rule) against its budget;
5. report: docs/results/vs_mseries.json, docs/img/vs-mseries.png, Markdown for docs/BENCHMARKS.md,
   and the pass conditions, stated plainly whether they hold or not.

``--arms`` adds the baselines a reviewer asks for at each budget (scripts/_arms.py): (b) the M-series
member at the resolution that fills the budget, timed beside the budget's M model, and (c) random search
at the same training budget (``--estimator random`` through the same refinement), beside (a) the M
model at 96 px and (d) the default search; writes docs/results/vs_mseries_arms.json (``_<task>`` after it
for a task other than shapes) with each arm's measured latency and cost, and its plot in docs/img.
``--data digits|noisy-digits`` writes scikit-learn's digits with a test split under ``--work`` first
(scripts/_digits_task.py): the second task of real images.

Every step is resumable: its results live under ``--work`` and a rerun skips what is done (a killed
training resumes from its last epoch). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import yaml
from _arms import (
    ARMS,
    RANDOM_ARGS,
    RANDOM_VARIANT,
    arms_markdown,
    gain_over,
    mean_sd,
    pick_scaled,
    plot_arms,
    scaled_candidates,
    time_scaled,
)
from _digits_task import TASKS as DIGITS_TASKS
from _digits_task import write_task
from _results import RESULTS_DIR, save_result

from effvit_nas import Arch, SearchSpace
from effvit_nas._io import atomic_write_text
from effvit_nas.latency.deploy import DeploymentRule
from effvit_nas.latency.meter import LatencyMeter
from effvit_nas.latency.table import LatencyTable, list_tables
from effvit_nas.provenance import git_revision, utc_now
from effvit_nas.train.data import open_data
from effvit_nas.units import format_ms

REPO = Path(__file__).resolve().parents[1]
SPACE = "shapes"  # the shipped space of that name
TABLE = "amd-epyc-2core-ort-b1-shapes"
REFERENCE_PX = 96  # the task's native side: the M-series' reference resolution on it
NOISE = 0.03  # a found network may measure this far over its budget and still count as within it
MIN_MEAN_GAIN = 1.5  # points of test top-1, averaged over the budgets
DEFAULT_VARIANT = "found"  # the search with the default settings: what a user gets
# The tiny run checks the pipeline: one refined candidate of one epoch, and no finalists timed (their
# window settles for up to 3 minutes on this VM; tests/search/test_measured.py holds that stage)
TINY_SEARCH_ARGS = ("--refine", "1", "--refine-epochs", "1", "--measure", "0")


def log(message: str) -> None:
    print(f"[bench_vs_mseries] {message}", file=sys.stderr, flush=True)


def effnas(*args: str) -> None:
    """Run the CLI as a user does; its progress shows on this terminal."""
    subprocess.run([sys.executable, "-m", "effvit_nas", *args], check=True, cwd=REPO)


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def check_same_settings(work: Path, settings: dict) -> None:
    """A resumed run must be the run it resumes: its trained networks and picks are reused by name."""
    path = work / "settings.json"
    if (before := read_json(path)) is not None:
        changed = [f"{k} was {before.get(k)!r}, now {v!r}" for k, v in settings.items()
                   if k != "seeds" and before.get(k) != v]  # more seeds extend a run
        if changed:
            raise SystemExit(f"--work {work} holds a run with other settings ({'; '.join(changed)}); pass the "
                             "same flags to resume it, or another --work")
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(settings, indent=1) + "\n")


# --------------------------------------------------------------------------- steps
def ensure_table(args: argparse.Namespace) -> LatencyTable:
    if TABLE not in list_tables():
        log(f"building the task's latency table {TABLE} (minutes)")
        effnas("table", "build", "--target", TABLE, "--space", SPACE)
    return LatencyTable.load(TABLE)


def m_series(models: list[str], work: Path) -> dict[str, Path]:
    """Each M model at the task's reference resolution, as a YAML the CLI reads."""
    files = {}
    for name in models:
        path = work / "archs" / f"{name}.yaml"
        if not path.exists():
            arch = Arch.preset(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            arch.replace(resolution=REFERENCE_PX, name=f"{arch.name}@{REFERENCE_PX}").to_yaml(path)
        files[name] = path
    return files


def measure_budgets(table: LatencyTable, archs: dict[str, Path], work: Path, seconds: float) -> dict[str, float]:
    """M models' figures under the deployment rule, all in one window (the fast state, so a figure taken
    now and one taken by ``verify`` later speak of the same quantity)."""
    path = work / "budgets.json"
    if (stored := read_json(path)) is None or sorted(stored["measured_ms"]) != sorted(archs):
        log(f"timing {', '.join(archs)} at {REFERENCE_PX} px under the deployment rule ({seconds:g} s window)")
        with LatencyMeter(table.runtime, rule=DeploymentRule(min_seconds=seconds)) as meter:
            run = meter.archs({name: Arch.from_yaml(p) for name, p in archs.items()})
        if run.failures:
            raise SystemExit(f"the M models must run as deployed, but {run.failures}")
        stored = {"measured_ms": {name: run.timings[name].latency_ms for name in archs}, "seconds": seconds,
                  "machine": run.machine()}
    # rounded to what the CLI prints and parses, so the budgets match the search's file names exactly
    budgets = {name: round(ms, 3) for name, ms in stored["measured_ms"].items()}
    atomic_write_text(path, json.dumps({**stored, "budgets_ms": budgets}, indent=1) + "\n")
    return budgets


def check_same_search_args(work: Path, variant: str, search_args: list[str]) -> None:
    """A variant is one configuration: its picks are trained and compared by its name (recorded beside
    its search folder, which the CLI wants empty for a new search)."""
    path = work / "variants" / f"{variant}.json"
    if (before := read_json(path)) is not None and before != search_args:
        raise SystemExit(f"--variant {variant} was searched with {before}, but --search-args is now {search_args}; "
                         "pass the same arguments or another --variant")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(search_args) + "\n")


def search(budgets: dict[str, float], work: Path, trials: int, data: str, variant: str,
           search_args: list[str], tiny: bool = False) -> dict[str, Path]:
    """One family search over every budget, as a user would run it; the pick per budget."""
    out = work / ("search" if variant == DEFAULT_VARIANT else f"search-{variant}")
    check_same_search_args(work, variant, search_args)
    picks = {name: out / (f"best-{format_ms(b)}.yaml" if len(budgets) > 1 else "best.yaml")
             for name, b in budgets.items()}
    if not (out / "metadata.json").exists():
        family = ",".join(f"{b:.3f}ms" for b in budgets.values())
        log(f"searching under {family} on {data}")
        resume = ["--resume"] if (out / "study.journal").exists() else []
        effnas("search", "--target", TABLE, "--budget", family, "--space", SPACE, "--data", data,
               "--trials", str(trials), "--out", str(out), *(TINY_SEARCH_ARGS if tiny else ()),
               *search_args, *resume)
    missing = [str(p) for p in picks.values() if not p.exists()]
    if missing:
        raise SystemExit(f"the search must find an arch for every budget, but {missing} are missing: see "
                         f"{out / 'metadata.json'}")
    return picks


def train(name: str, arch: Path, seed: int, work: Path, data: str, recipe: str, epochs: int) -> dict:
    out = work / "train" / name / f"seed{seed}"
    if (done := read_json(out / "metrics.json")) and done.get("test_top1") is not None:
        return done
    if (same := trained_before(Arch.from_yaml(arch), seed, work)) is not None:
        # one arch picked under two budgets: training is deterministic per arch and seed here (identical
        # curves when it was trained twice), so its run stands for both rather than costing minutes again
        log(f"{name} seed {seed}: the same arch as {same[0]}, whose run it takes")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "metrics.json", json.dumps({**same[1], "same_run_as": same[0]}, indent=1) + "\n")
        return same[1]
    resume = ["--resume"] if (out / "checkpoint.pt").exists() else []
    log(f"training {name} seed {seed} ({recipe} recipe, {epochs} epochs){' (resumed)' if resume else ''}")
    effnas("train", str(arch), "--data", data, "--recipe", recipe, "--epochs", str(epochs), "--seed", str(seed),
           "--out", str(out), *resume)
    return read_json(out / "metrics.json")


def trained_before(arch: Arch, seed: int, work: Path) -> tuple[str, dict] | None:
    """(name, metrics) of a finished run of ``arch`` (by arch id, under another name) with ``seed``, if any."""
    for path in sorted((work / "train").glob(f"*/seed{seed}/metrics.json")):
        metrics = read_json(path)
        if metrics.get("test_top1") is not None and Arch.from_dict(metrics["settings"]["arch"]).arch_id == arch.arch_id:
            return path.parent.parent.name, metrics
    return None


def verify(name: str, arch: Path, budget: float, work: Path, seconds: float, force: bool = False) -> dict:
    """``effnas verify``'s report (its figure is the fast state, as the budgets' are).
    ``force``: measure on a machine that is not the table's (the tiny run checks the pipeline only)."""
    out = work / "verify" / f"{name}-{Arch.from_yaml(arch).arch_id}"
    if (done := read_json(out / "verify.json")) is None:
        log(f"verifying {name} against {budget:.3f} ms")
        try:
            effnas("verify", str(arch), "--target", TABLE, "--budget", f"{budget * (1 + NOISE):.4f}ms",
                   "--out", str(out), "--seconds", f"{seconds:g}", *(["--force"] if force else []))
        except subprocess.CalledProcessError as exc:  # exit 1 is a verdict (over budget), recorded below
            if exc.returncode != 1:
                raise
        done = read_json(out / "verify.json")
    return done


# --------------------------------------------------------------------------- report
def compare(m_top1: list[float], found_top1: list[float]) -> dict:
    """Mean gain of the found network and the standard error of that difference (Welch)."""
    (m_mean, m_sd), (f_mean, f_sd) = mean_sd(m_top1), mean_sd(found_top1)
    gain = gain_over(m_top1, found_top1)
    return {"m_mean": m_mean, "m_sd": m_sd, "found_mean": f_mean, "found_sd": f_sd, "gain": gain["gain"],
            "se_of_gain": gain["se"], "gain_beyond_se": gain["beyond_se"]}


def plot(rows: list[dict], path: Path, variant: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for who, colour, marker in (("m", "tab:grey", "s"), ("found", "tab:red", "o")):
        xs = [r[f"{who}_measured_ms"] for r in rows]
        ys = [r[f"{who}_mean"] for r in rows]
        sds = [0 if math.isnan(r[f"{who}_sd"]) else r[f"{who}_sd"] for r in rows]
        label = ("EfficientViT M-series (hand-designed)" if who == "m" else
                 "found by effnas search" + ("" if variant == DEFAULT_VARIANT else f" ({variant})"))
        ax.errorbar(xs, ys, yerr=sds, color=colour, marker=marker, capsize=3, label=label)
        for r, x, y in zip(rows, xs, ys):
            ax.annotate(r["model"].upper() if who == "m" else f"@{r['model'].upper()}", (x, y),
                        textcoords="offset points", xytext=(4, -10 if who == "m" else 6), fontsize=8, color=colour)
    ax.set(xlabel="measured latency, ms\n(onnxruntime, batch 1, 2 threads; deployment rule, at the table's speed)",
           ylabel="test top-1 % (mean ± sd over seeds)", title="shapes task: found networks vs the M-series")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(rows: list[dict], verdict: dict) -> str:
    lines = ["| budget (M) | budget ms | M test top-1 | found test top-1 | gain ± SE | M verified ms | "
             "found verified ms | found / M, interleaved | found within |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratios = ", ".join(f"{x:.2f}x" for x in r["found_ratio_to_m_runs"]) or "not timed"
        lines.append(f"| {r['model'].upper()} | {r['budget_ms']:.3f} | {r['m_mean']:.2f} ± {r['m_sd']:.2f} | "
                     f"{r['found_mean']:.2f} ± {r['found_sd']:.2f} | {r['gain']:+.2f} ± {r['se_of_gain']:.2f} | "
                     f"{r['m_measured_ms']:.3f} | {r['found_measured_ms']:.3f} | {ratios} | "
                     f"{r['found_within_budget']} |")
    lines += ["", "(verified: `effnas verify`, the fast state like the budgets; "
              "found / M: the pick's figure over its M model's in the same window, one figure "
              "per `--latency-ratios` run, and what \"within\" is judged by when it exists)", ""]
    lines.append(f"Mean gain {verdict['mean_gain']:+.2f} points (pass needs >= {MIN_MEAN_GAIN}); every budget "
                 f"beaten beyond its SE: {verdict['every_budget_beaten']}; every found network within its "
                 f"budget (+{NOISE:.0%}): {verdict['every_found_within']}. **Pass: {verdict['passed']}**")
    return "\n".join(lines)


def pick_file(folder: Path, budget: float) -> Path | None:
    """The pick a finished search in ``folder`` made for ``budget`` (best.yaml alone for one budget)."""
    best = (read_json(folder / "metadata.json") or {}).get("best", {}).get(format_ms(budget))
    return Path(best["files"][0]) if best else None


def latency_ratios(table: LatencyTable, work: Path, m_archs: dict[str, Path], budgets: dict[str, float],
                   seconds: float) -> dict[str, dict]:
    """Every variant's pick beside the M model of its budget, in the same interleaved rounds: the
    pick's median over the M model's is what "at the same measured latency" means, free of the speed
    state and of how far apart in time two ``verify`` runs were (small networks here move with the
    machine's state far more than the reference that corrects for it)."""
    rows: dict[str, dict] = {}
    with LatencyMeter(table.runtime, rule=DeploymentRule(min_seconds=seconds)) as meter:
        for m, m_path in m_archs.items():
            archs = {m: Arch.from_yaml(m_path)}
            for folder in sorted(work.glob("search*")):
                pick = pick_file(folder, budgets[m])
                if pick is not None:
                    variant = DEFAULT_VARIANT if folder.name == "search" else folder.name.removeprefix("search-")
                    archs[variant] = Arch.from_yaml(pick)
            log(f"timing {', '.join(archs)} at {m.upper()}'s budget, in one window ({seconds:g} s)")
            run = meter.archs(archs)
            if run.failures:
                raise SystemExit(f"every network must run as deployed, but {run.failures}")
            m_ms = run.timings[m].latency_ms
            rows[m] = {name: {"arch_id": archs[name].arch_id, "measured_ms": t.latency_ms,
                              "ratio_to_m": t.latency_ms / m_ms, "reference_ms": run.reference_ms,
                              "predicted_ms": table.predict_ms(archs[name])}
                       for name, t in run.timings.items()}
    return rows


LATENCY_RESULT = "vs_mseries_latency"


def latency_runs() -> list[dict]:
    """Every saved interleaved run (docs/results/vs_mseries_latency.json), the file's first form (one run
    at the top level) read as a list of one."""
    saved = read_json(RESULTS_DIR / f"{LATENCY_RESULT}.json") or {}
    if "rows" in saved:
        return [{"table": saved.get("table", TABLE), **{k: saved[k] for k in
                                                        ("rows", "budgets_ms", "created", "git_revision")}}]
    return saved.get("runs", [])


def save_latency_run(rows: dict[str, dict], budgets: dict[str, float], seconds: float) -> None:
    """Add one interleaved run to the saved ones (a ratio is claimed from two runs, not one)."""
    runs = [*latency_runs(), {"table": TABLE, "rows": rows, "budgets_ms": budgets, "seconds": seconds,
                              "created": utc_now(), "git_revision": git_revision()}]
    save_result(LATENCY_RESULT, "python scripts/bench_vs_mseries.py --latency-ratios (once per run)", {"runs": runs})


def interleaved_ratios(m: str, m_arch_id: str, arch_id: str) -> list[float]:
    """The pick ``arch_id``'s median over its M model's in each saved interleaved run (empty: never timed
    beside it): what "at the same measured latency" is judged by, since two ``verify`` runs hours apart
    differ by more than the 3% allowed."""
    ratios = []
    for run in latency_runs():
        timed = run["rows"].get(m, {})
        if run["table"] != TABLE or timed.get(m, {}).get("arch_id") != m_arch_id:
            continue  # another table's run, or another M arch beside it
        ratios += [row["ratio_to_m"] for row in timed.values() if row["arch_id"] == arch_id][:1]
    return ratios


def describe_picks(picks: dict[str, Path]) -> str:
    lines = ["| budget (M) | px | widths | depths | heads | key dims | FFN ratios | params | predicted ms | score |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m, path in picks.items():
        arch, meta = Arch.from_yaml(path), yaml.safe_load(path.read_text())["metadata"]
        predicted = next(iter(meta["predicted_latency_ms"].values()))
        lines.append(f"| {m.upper()} | {arch.resolution} | {list(arch.widths)} | {list(arch.depths)} | "
                     f"{list(arch.heads)} | {list(arch.key_dims)} | {list(arch.ffn_ratios)} | "
                     f"{meta['params'] / 1e6:.2f}M | {predicted:.3f} | {meta['score']:.3g} |")
    return "\n".join(lines)


def finished_runs(work: Path, seeds: int) -> dict[str, list[dict]]:
    """Every network trained to the end so far (every variant), per seed: test top-1, arch, curve."""
    rows: dict[str, list[dict]] = {}
    for folder in sorted((work / "train").glob("*")):
        for seed in range(seeds):
            metrics = read_json(folder / f"seed{seed}" / "metrics.json")
            if metrics and metrics.get("test_top1") is not None:
                rows.setdefault(folder.name, []).append({
                    "seed": seed, "test_top1": metrics["test_top1"], "arch": metrics["settings"]["arch"],
                    "val_top1_per_epoch": [e["val_top1"] for e in metrics["epochs"]],
                    "train_img_per_s": metrics["train_img_per_s"],
                    # a run carried into a fresh work dir from committed results rather than trained in it
                    **({"restored_from": metrics["restored_from"]} if "restored_from" in metrics else {})})
    return rows


# The estimators a search can use without a supernet or training: the ground-truth study's, on this task.
RANKED_ESTIMATORS = ("params", "macs", "size-prior", "grad-norm", "synflow", "naswot", "zico")


def estimator_ranks(work: Path, args: argparse.Namespace) -> None:
    """Each estimator's ranking of every network trained so far against its seed-mean test top-1 (the
    study of scripts/study_estimators.py, with the benchmark's trained networks as its ground truth:
    the M-series and what each variant's search picked, so the sample is what searches visit, not random)."""
    from scipy.stats import kendalltau, spearmanr

    from effvit_nas.estimators import create_estimator
    from effvit_nas.estimators._proxies import OWN_RESOLUTION

    runs = finished_runs(work, args.seeds)
    archs = {name: Arch.from_dict(r[0]["arch"]) for name, r in runs.items()}
    truth = {name: statistics.fmean(x["test_top1"] for x in r) for name, r in runs.items()}
    names = sorted(truth)
    ranks = {}
    for estimator_name in RANKED_ESTIMATORS:
        options = {} if estimator_name in ("params", "macs", "size-prior") else {"resolution": OWN_RESOLUTION,
                                                                                 "data": args.data}
        estimator = create_estimator(estimator_name, **options)
        scores = {name: estimator.score(archs[name]) for name in names}
        t, s = [truth[n] for n in names], [scores[n] for n in names]
        ranks[estimator_name] = {"spearman": spearmanr(t, s).statistic, "kendall": kendalltau(t, s).statistic,
                                 "scores": scores}
        log(f"{estimator_name}: Spearman {ranks[estimator_name]['spearman']:.3f} over {len(names)} networks")
    save_result("vs_mseries_estimator_ranks", "python scripts/bench_vs_mseries.py --estimator-ranks",
                {"data": args.data, "networks": {n: {"seeds": len(runs[n]), "test_top1_mean": truth[n],
                                                     "arch": archs[n].to_dict()} for n in names},
                 "ranks": ranks})


def save_partial(work: Path, args: argparse.Namespace) -> None:
    """What a stopped run has trained so far (finished runs only, every variant), without training or
    measuring more."""
    rows = finished_runs(work, args.seeds)
    variants = {p.stem: read_json(p) for p in sorted((work / "variants").glob("*.json"))}
    variants[DEFAULT_VARIANT] = []
    budgets = read_json(work / "budgets.json")
    picks = {}  # variant -> budget -> the pick and what the search predicted for it
    stages = {}  # variant -> the search's stage times, refined candidates and timed finalists
    for variant in variants:
        folder = work / ("search" if variant == DEFAULT_VARIANT else f"search-{variant}")
        metadata = read_json(folder / "metadata.json") or {"best": {}}
        picks[variant] = {label: {"arch": Arch.from_yaml(best["files"][0]).to_dict(),
                                  **{k: best[k] for k in ("predicted_latency_ms", "limit_ms", "score", "params")},
                                  **{k: best[k] for k in ("refined_top1", "measured_latency_ms") if k in best}}
                          for label, best in metadata["best"].items()}
        # what the search's stages took and found: each budget's trained candidates, each timed finalist
        stages[variant] = {k: metadata[k] for k in ("search_seconds", "measure_seconds", "refine_seconds",
                                                    "measurement") if k in metadata}
        stages[variant]["refined_candidates"] = {label: best["refined_candidates"]
                                                 for label, best in metadata["best"].items()
                                                 if "refined_candidates" in best}
    # one file per work dir: a run in another --work (other budgets) does not overwrite the default's
    default_work = work.resolve() == (REPO / "runs" / "bench-vs-mseries").resolve()
    name = "vs_mseries_partial" + ("" if default_work else "_" + work.name.replace("-", "_"))
    command = "python scripts/bench_vs_mseries.py --partial" + ("" if default_work else f" --work {args.work}")
    save_result(name, f"{command} (after a stopped run)",
                {"settings": read_json(work / "settings.json"), "budgets": budgets,
                 "variants_search_args": variants, "picks": picks, "search_stages": stages, "trained": rows})
    for name, runs in rows.items():
        log(f"{name}: test top-1 {[round(r['test_top1'], 2) for r in runs]}")


def search_cost_min(work: Path, variant: str) -> float | None:
    """Wall minutes of a variant's family search (all budgets): search, timing and refinement."""
    folder = work / ("search" if variant == DEFAULT_VARIANT else f"search-{variant}")
    metadata = read_json(folder / "metadata.json")
    if metadata is None:
        return None
    return sum(metadata.get(k, 0.0) for k in ("search_seconds", "measure_seconds", "refine_seconds")) / 60


def run_arms(args: argparse.Namespace, table: LatencyTable, work: Path, models: list[str], m_archs: dict[str, Path],
             budgets: dict[str, float]) -> None:
    """The four arms per budget (scripts/_arms.py), trained seed-major, then the report."""
    found = search(budgets, work, args.trials, args.data, DEFAULT_VARIANT, [], tiny=args.tiny)
    randomly = search(budgets, work, args.trials, args.data, RANDOM_VARIANT, RANDOM_ARGS, tiny=args.tiny)

    def first_seed(name: str, path: Path) -> dict:
        metrics = train(name, path, 0, work, args.data, args.recipe, args.epochs)
        return {"val_top1": metrics["epochs"][-1]["val_top1"],
                "seconds": sum(e["train_seconds"] for e in metrics["epochs"])}

    space = SearchSpace.load(SPACE)
    scaled: dict[str, dict] = {}
    for m in models:
        path = work / "scaled" / f"{m}.json"
        if (timed := read_json(path)) is None:
            # the tiny run checks the pipeline: one member keeps it to minutes
            candidates = scaled_candidates(table, space, budgets[m], *([("m0",)] if args.tiny else []))
            log(f"timing {len(candidates)} M-series networks at other sides beside {m.upper()} ({args.seconds:g} s)")
            # the budget over the model's own figure: 1 but for rounding, 2 in the tiny run (budgets doubled)
            budget_in_models = budgets[m] / read_json(work / "budgets.json")["measured_ms"][m]
            timed = time_scaled(table, m, Arch.from_yaml(m_archs[m]), candidates, args.seconds, NOISE, budget_in_models)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(timed, indent=1) + "\n")
        qualifying = {}
        for name, row in timed["rows"].items():
            if row["qualifies"]:
                qualifying[name] = work / "archs" / f"{name}.yaml"
                if not qualifying[name].exists():
                    Arch.from_dict(row["arch"]).to_yaml(qualifying[name])
        if not qualifying:
            raise SystemExit(f"no M-series member measured within {m.upper()}'s budget at any resolution: see {path}")
        chosen = pick_scaled(qualifying, lambda name, p: first_seed(name, p))
        selection_s = sum(first_seed(n, p)["seconds"] for n, p in qualifying.items() if n != chosen)
        scaled[m] = {"chosen": chosen, "path": qualifying[chosen], "timed": timed,
                     "cost_wall_min": selection_s / 60,
                     "first_seed_val": {n: first_seed(n, p)["val_top1"] for n, p in qualifying.items()}}
    networks = {}
    for m in models:
        networks[(m, "m")] = (m, m_archs[m])
        networks[(m, "scaled")] = (scaled[m]["chosen"], scaled[m]["path"])
        networks[(m, "random")] = (f"{RANDOM_VARIANT}@{m}", randomly[m])
        networks[(m, "found")] = (f"{DEFAULT_VARIANT}@{m}", found[m])
    for seed in range(args.seeds):  # seed-major: a stopped run leaves whole budgets to compare
        for name, path in networks.values():
            train(name, path, seed, work, args.data, args.recipe, args.epochs)
    costs = {"random": search_cost_min(work, RANDOM_VARIANT), "found": search_cost_min(work, DEFAULT_VARIANT)}
    rows = []
    for m in models:
        arms = {}
        for arm in ARMS:
            name, path = networks[(m, arm)]
            top1 = [train(name, path, seed, work, args.data, args.recipe, args.epochs)["test_top1"]
                    for seed in range(args.seeds)]
            mean, sd = mean_sd(top1)
            arch = Arch.from_yaml(path)
            arms[arm] = {"label": arch_label(arch, arm, name), "test_top1": top1, "mean": mean, "sd": sd,
                         "arch": arch.to_dict(), "predicted_ms": table.predict_ms(arch),
                         "measured_of_budget": measured_of_budget(work, arm, name, scaled[m]["timed"], budgets[m]),
                         "cost_wall_min": scaled[m]["cost_wall_min"] if arm == "scaled" else costs.get(arm)}
        rows.append({"model": m, "budget_ms": budgets[m], "arms": arms,
                     "scaled_timing": scaled[m]["timed"], "scaled_first_seed_val": scaled[m]["first_seed_val"],
                     "vs_scaled": gain_over(arms["scaled"]["test_top1"], arms["found"]["test_top1"]),
                     "vs_random": gain_over(arms["random"]["test_top1"], arms["found"]["test_top1"]),
                     "vs_m": gain_over(arms["m"]["test_top1"], arms["found"]["test_top1"])})
    beaten = sum(r["vs_scaled"]["beyond_se"] and r["vs_random"]["beyond_se"] for r in rows)
    verdict = {"budgets_beating_both_beyond_se": beaten, "budgets": len(rows),
               "passed": beaten >= math.ceil(0.75 * len(rows)),
               "note": "within-budget of each pick is judged by --latency-ratios runs and verify, reported apart"}
    print(arms_markdown(rows))
    print(f"\n(d) beats (b) and (c) beyond the standard error at {beaten} of {len(rows)} budgets "
          f"(pass needs {math.ceil(0.75 * len(rows))}). **Pass: {verdict['passed']}**")
    if not args.no_save:
        name = "vs_mseries_arms_tiny" if args.tiny else "vs_mseries_arms"
        if args.task != "shapes" and not args.tiny:  # one file per task
            name += "_" + Path(args.task).name.replace("-", "_")
        save_result(name, "python scripts/bench_vs_mseries.py " + " ".join(sys.argv[1:]),
                    {"task": args.task, "data": args.data, "space": SPACE, "table": TABLE, "seeds": args.seeds,
                     "recipe": args.recipe,
                     "epochs": args.epochs, "trials": args.trials, "rows": rows, "verdict": verdict})
        plot_arms(rows, RESULTS_DIR.parent / "img" / f"{name.replace('_', '-')}.png", args.task)


def measured_of_budget(work: Path, arm: str, name: str, timed: dict, budget_ms: float) -> float | None:
    """An arm's network measured as deployed, over its budget: (a) is the budget; (b) was timed beside the
    budget's model in one window; (c) and (d) were timed as the search's finalists (None: not timed)."""
    if arm == "m":
        return 1.0
    if arm == "scaled":
        return timed["rows"][name]["ratio_to_m"] / timed["budget_in_models"]
    folder = work / ("search" if arm == "found" else f"search-{RANDOM_VARIANT}")
    best = read_json(folder / "metadata.json")["best"][format_ms(budget_ms)]
    measured = best.get("measured_latency_ms", {}).get(TABLE)
    return None if measured is None else measured / budget_ms


def arch_label(arch: Arch, arm: str, name: str) -> str:
    if arm in ("m", "scaled"):
        return f"{name.split('@')[0].upper()} {arch.resolution} px"
    return f"{arch.resolution} px, depths {'/'.join(map(str, arch.depths))}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="m0,m1,m2,m3")
    parser.add_argument("--data", default="shapes", help="shapes (--tiny: shapes-mini, its first images), digits or "
                        "noisy-digits (written with a test split under --work: scripts/_digits_task.py), or a DIR "
                        "with train/, val/ and test/")
    parser.add_argument("--seeds", type=int, default=3)
    # screening: the small recipe at 3x its learning rate; on shapes it separates M0 from M3 within a few
    # epochs where the small recipe has not (docs/BENCHMARKS.md, "The search against the M-series")
    parser.add_argument("--recipe", default="screening")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60.0, help="the deployment rule's window for budgets and "
                        "verify")
    parser.add_argument("--work", default=None, help="default runs/bench-vs-mseries (-tiny with --tiny)")
    parser.add_argument("--tiny", action="store_true",
                        help="shapes-mini, one budget (M0), one seed, one epoch, 30 trials, 1 refined candidate "
                             "of one epoch, no finalists timed, 1 round: the pipeline only")
    parser.add_argument("--variant", default=DEFAULT_VARIANT,
                        help=f"name of the search configuration compared (default {DEFAULT_VARIANT!r}: the defaults)")
    parser.add_argument("--search-args", default="",
                        help='extra effnas search arguments for --variant, e.g. "--estimator zico --refine 4"')
    parser.add_argument("--search-only", action="store_true", help="stop after the search; print its picks")
    parser.add_argument("--latency-ratios", action="store_true",
                        help="time every variant's picks beside their M model in the same rounds "
                             "(docs/results/vs_mseries_latency.json), then stop")
    parser.add_argument("--arms", action="store_true",
                        help="the four arms per budget: M at 96 px, the M-series at the resolution that fills the "
                             "budget, random search at the same training budget, the default search (scripts/_arms.py)")
    parser.add_argument("--no-save", action="store_true", help="do not write docs/results or docs/img")
    parser.add_argument("--estimator-ranks", action="store_true",
                        help="rank every network trained so far by each estimator against its test top-1 "
                             "(docs/results/vs_mseries_estimator_ranks.json), then stop")
    parser.add_argument("--partial", action="store_true",
                        help="save what a stopped run has trained so far (docs/results/vs_mseries_partial.json)")
    args = parser.parse_args()
    if args.tiny:
        args.data, args.models, args.seeds, args.epochs, args.trials, args.seconds = "shapes-mini", "m0", 1, 1, 30, 3
        args.work = args.work or str(REPO / "runs" / "bench-vs-mseries-tiny")
    work = Path(args.work or REPO / "runs" / "bench-vs-mseries")
    models = [m.strip().lower() for m in args.models.split(",")]
    search_args = shlex.split(args.search_args)
    if (args.variant == DEFAULT_VARIANT) != (not search_args) or not args.variant.replace("-", "").isalnum():
        raise SystemExit(f"--variant must be a name of letters, digits and '-', and {DEFAULT_VARIANT!r} exactly when "
                         f"--search-args is empty (the defaults), but got --variant {args.variant!r} with "
                         f"--search-args {args.search_args!r}")
    args.task = args.data  # what the run is called; the data it reads may be a folder written from it
    if args.data in DIGITS_TASKS:  # scikit-learn's digits with a test split, as a user's ImageFolder
        args.data = str(write_task(args.data, work / "data" / args.data))
    if open_data(args.data).test is None:
        raise SystemExit(f"--data must have a test split (shapes, shapes-mini, digits, noisy-digits or a DIR "
                         f"with test/), but "
                         f"{args.data!r} has none: the benchmark's figure is held-out test top-1")
    check_same_settings(work, {"data": args.task, "models": models, "seeds": args.seeds, "recipe": args.recipe,
                               "epochs": args.epochs, "trials": args.trials, "seconds": args.seconds})

    table = ensure_table(args)
    m_archs = m_series(models, work)
    budgets = measure_budgets(table, m_archs, work, args.seconds)
    if args.tiny:  # the pipeline only: a budget the search surely reaches whatever this VM's speed state
        budgets = {m: round(2 * b, 3) for m, b in budgets.items()}
    if args.partial:
        save_partial(work, args)
        return
    if args.estimator_ranks:
        estimator_ranks(work, args)
        return
    if args.latency_ratios:
        rows = latency_ratios(table, work, m_archs, budgets, args.seconds)
        for m, by_name in rows.items():
            log(f"{m.upper()} ({budgets[m]:.3f} ms budget): " + ", ".join(
                f"{name} {r['measured_ms']:.3f} ms ({r['ratio_to_m']:.2f}x, predicted {r['predicted_ms']:.3f})"
                for name, r in by_name.items()))
        if not args.no_save and not args.tiny:  # the saved runs are the full benchmark's
            save_latency_run(rows, budgets, args.seconds)
        return
    if args.arms:
        run_arms(args, table, work, models, m_archs, budgets)
        return
    picks = search(budgets, work, args.trials, args.data, args.variant, search_args, tiny=args.tiny)
    if args.search_only:
        print(describe_picks(picks))
        return
    found = args.variant
    networks = {name: path for m in models for name, path in ((m, m_archs[m]), (f"{found}@{m}", picks[m]))}
    # seed-major, each M model beside its found variant: every network gets its first seed before any
    # gets a second, and a run stopped within a seed leaves whole pairs to compare
    for seed in range(args.seeds):
        for name, path in networks.items():
            train(name, path, seed, work, args.data, args.recipe, args.epochs)
    trained = {name: [train(name, path, seed, work, args.data, args.recipe, args.epochs) for seed in range(args.seeds)]
               for name, path in networks.items()}
    verified = {name: verify(name, path, budgets[name.split("@")[-1]], work, args.seconds, force=args.tiny)
                for name, path in networks.items()}

    rows = []
    for m in models:
        m_ms, found_ms = (verified[n]["judged_ms"] for n in (m, f"{found}@{m}"))
        # the saved interleaved runs are the full benchmark's: the tiny pipeline run is judged by verify alone
        ratios = [] if args.tiny else interleaved_ratios(m, Arch.from_yaml(m_archs[m]).arch_id,
                                                         Arch.from_yaml(picks[m]).arch_id)
        ratio = statistics.median(ratios) if ratios else None
        row = {"model": m, "budget_ms": budgets[m],
               **compare([r["test_top1"] for r in trained[m]], [r["test_top1"] for r in trained[f"{found}@{m}"]]),
               "m_measured_ms": m_ms, "found_measured_ms": found_ms,
               "found_predicted_ms": verified[f"{found}@{m}"]["predicted_ms"],
               "found_arch": Arch.from_yaml(picks[m]).to_dict(),
               "found_ratio_to_m_runs": ratios, "found_ratio_to_m": ratio,
               # beside the M model in the same rounds where such runs exist, else verify against the budget
               "found_within_judged_by": "interleaved ratio to M" if ratios else "verify against the budget",
               "found_within_budget": ratio <= 1 + NOISE if ratios else found_ms <= budgets[m] * (1 + NOISE),
               "m_test_top1": [r["test_top1"] for r in trained[m]],
               "found_test_top1": [r["test_top1"] for r in trained[f"{found}@{m}"]],
               "curves": {name: [[e["epoch"], e["val_top1"]] for e in trained[name][0]["epochs"]]
                          for name in (m, f"{found}@{m}")}}
        rows.append(row)
    verdict = {"mean_gain": statistics.fmean(r["gain"] for r in rows),
               "every_budget_beaten": all(r["gain_beyond_se"] for r in rows),
               "every_found_within": all(r["found_within_budget"] for r in rows)}
    verdict["passed"] = (verdict["every_budget_beaten"] and verdict["every_found_within"]
                         and verdict["mean_gain"] >= MIN_MEAN_GAIN)
    print(markdown(rows, verdict))
    if not args.no_save:
        name = "vs_mseries_tiny" if args.tiny else "vs_mseries"
        if found != DEFAULT_VARIANT:
            name += "_" + found.replace("-", "_")
        command = "python scripts/bench_vs_mseries.py " + " ".join(sys.argv[1:])
        save_result(name, command.strip(), {"task": args.data, "space": SPACE, "table": TABLE,
                                            "reference_px": REFERENCE_PX, "seeds": args.seeds, "recipe": args.recipe,
                                            "epochs": args.epochs,
                                            "trials": args.trials, "seconds": args.seconds, "variant": found,
                                            "search_args": search_args, "rows": rows,
                                            "verdict": verdict})
        plot(rows, RESULTS_DIR.parent / "img" / f"{name.replace('_', '-')}.png", found)


if __name__ == "__main__":
    main()
