"""``effnas search --target NAME --budget 2ms``: the main job."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EffNasError

if TYPE_CHECKING:
    from ..search import Refinement, SearchBackend
    from ..space import SearchSpace


NO_ARCH_FOR_A_BUDGET = 1  # the search ran and its results are written, but some budget has no arch
EPILOG = """exit status:
  0    an arch for every budget (best.yaml and the rest in --out)
  1    the search ran, but no arch it found meets some budget (the others are written); the message
       gives the lowest predicted latency reached (raise --trials or the budget) or, with --measure,
       the fastest finalist measured
  2    bad input, or the estimator could not score any trial (the first reason is given)
  130  interrupted; rerun the same command with --resume to continue"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("search", help="find the best archs under latency budgets", epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", action="append", required=True,
                        help="latency table (name or .json); repeat with one --budget each for several targets")
    parser.add_argument("--budget", action="append", required=True,
                        help="a time (2ms) or a model (m1, 0.8xm2, m1@96: no slower than that model on the target); "
                             "a list 1ms,2ms,4ms or m0,m1,m2 on one target makes a family")
    parser.add_argument("--confidence", type=float, default=None,
                        help="chance each found arch meets its budget, from the table's validation residuals: "
                             "predicted latency kept under budget / q, q their conformal quantile (default 0.95; "
                             "0.5 when finalists are timed, --measure: the measurement keeps the budget)")
    parser.add_argument("--margin", default=None,
                        help="a fixed headroom below each budget instead, e.g. 5%% (for a table with too few "
                             "residuals; 0 uses the budget as is)")
    parser.add_argument("--space", default=None, help="search space YAML (default: the built-in one)")
    parser.add_argument("--trials", type=int, default=300,
                        help="scored candidates that fit the budget they were proposed for, failed ones included "
                             "(proposals over it are told infeasible unscored and M0-M5 over every limit are "
                             "scored for comparison; neither counts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampler", default="tpe", help="tpe (default), nsga2 or random")
    parser.add_argument("--estimator", default=None, help="accuracy estimator (default: synflow, docs/ESTIMATORS.md)")
    parser.add_argument("--estimator-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="an estimator option, e.g. --estimator-arg epochs=3 for short-training")
    parser.add_argument("--data", default=None,
                        help="the images the estimator scores on: digits, noisy-digits, shapes(-mini) or an "
                             "ImageFolder DIR with train/ and val/ (default: the estimator's own, noisy-digits)")
    parser.add_argument("--refine", type=int, default=None, metavar="K",
                        help="second stage: short-train K of the estimator's best archs per budget (the best at "
                             "each resolution first) on --data, each the same --refine-epochs, and pick by "
                             "validation top-1 among those above chance; default with --data: one per "
                             "resolution of the space, without: off; "
                             "--refine 0 turns it off (docs/SEARCH.md)")
    parser.add_argument("--measure", type=int, default=None, metavar="N",
                        help="time the estimator's N best archs per budget (spread over resolutions) on this machine "
                             "as deployed and keep only those that measure within the budget, before --refine picks "
                             "among them; needs the table's own hardware; default with --refine on the table's "
                             "hardware: 2K, otherwise off; --measure 0 turns it off (docs/SEARCH.md)")
    parser.add_argument("--refine-epochs", type=int, default=4, help="epochs each refined candidate trains")
    parser.add_argument("--refine-recipe", default="screening",
                        help="the recipe refinement trains with: screening (default: the small recipe at 3x its "
                             "learning rate), small (gentler) or paper")
    parser.add_argument("--supernet", default=None, metavar="CKPT",
                        help="supernet.pt from effnas supernet train, for --estimator supernet")
    parser.add_argument("--out", default=None, help="output folder (default: runs/<target>-<budget>)")
    parser.add_argument("--resume", action="store_true", help="continue the study in --out")
    parser.add_argument("--backend", default="optuna", help="optuna (trials on this machine, the default) or ray")
    parser.add_argument("--workers", type=int, default=None,
                        help="trials scored at once (default 1); optuna: worker processes on this machine, at "
                             "most one per CPU (docs/SEARCH.md: faster, but its picks were worse); ray: Ray trials")
    ray = parser.add_argument_group("Ray Tune backend (--backend ray; docs/SEARCH.md)")
    ray.add_argument("--address", default=None,
                     help="a running Ray cluster (auto, or HOST:PORT of `ray start --head`); default: start one here")
    ray.add_argument("--cpus-per-trial", type=float, default=None, help="CPUs Ray reserves per trial (default 1)")
    ray.add_argument("--gpus-per-trial", type=float, default=None, help="GPUs Ray reserves per trial (default 0)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..budget import parse_budgets
    from ..estimators import create_estimator, option_defaults
    from ..search import SearchProblem, Target, default_measurement, run_search
    from ..units import parse_percent
    from ._common import load_space, load_table, parse_overrides, progress_bar

    if len(args.budget) != len(args.target):
        raise EffNasError(f"each --target needs one --budget, but got {len(args.target)} targets and "
                          f"{len(args.budget)} budgets")
    budgets = [parse_budgets(b) for b in args.budget]
    if len(args.target) > 1 and any(len(b) > 1 for b in budgets):
        raise EffNasError("a family of budgets (1ms,2ms,...) needs a single --target, but got several targets")
    space = load_space(args.space)
    tables = [load_table(t) for t in args.target]
    margin = None if args.margin is None else parse_percent(args.margin, "--margin")
    options = parse_overrides(args.estimator_arg, "--estimator-arg")
    if args.supernet:
        if args.estimator != "supernet":
            raise EffNasError(f"--supernet is read by --estimator supernet, but the estimator is "
                              f"{args.estimator or 'the default'}; add --estimator supernet or drop --supernet")
        options["checkpoint"] = args.supernet
    refine = default_refine(space, args.data) if args.refine is None else args.refine
    data = checked_data(args.data, args.estimator, refine) if args.data is not None else None
    if data is not None and "data" in option_defaults(args.estimator):
        options["data"] = data
    estimator = create_estimator(args.estimator, **options)
    backend = _backend(args)
    out = Path(args.out) if args.out else Path("runs") / (
        f"{tables[0].target}-" + "-".join(b.label for b in budgets[0]))
    # after the cheap checks: on a GPU table this starts the runtime to read the hardware
    measure, not_timed = default_measurement(refine, tables[0]) if args.measure is None else (args.measure, None)
    confidences = _confidences(args, tables, margin, measure, out)
    targets = [Target.of(table, b, margin, c) for table, b, c in zip(tables, budgets, confidences)]
    problem = SearchProblem(space, targets, estimator)
    refinement = None
    if refine:
        from ..search import Refinement

        refinement = Refinement(candidates=refine, epochs=args.refine_epochs, seed=args.seed,
                                recipe=args.refine_recipe, **({"data": data} if data else {}))
    measurement = None
    if measure:
        from ..search import Measurement

        measurement = Measurement(candidates=measure)
        if refine and measure < refine:
            raise EffNasError(f"--measure must be at least --refine ({refine}) so the refinement has its {refine} "
                              f"finalists to train, but got --measure {measure}; pass --measure {refine} or more")
    if not_timed:  # said before the search, which then runs on the table's prediction alone
        print(f"effnas: finalists not timed here ({not_timed}); the picks rest on the table's prediction with "
              f"{targets[0].rule}", file=sys.stderr)
    with progress_bar("searching") as progress:
        metadata = run_search(problem, out, trials=args.trials, seed=args.seed, sampler=args.sampler,
                              resume=args.resume, progress=progress, backend=backend, refinement=refinement,
                              measurement=measurement)
    unscored = metadata.get("trials_unscored", 0)
    print(f"{metadata['trials_complete']} trials scored ({metadata['trials_can_fit']} could fit), "
          f"{metadata['feasible']} feasible"
          + (f" ({unscored} more proposals over the limit aimed at, told infeasible unscored)" if unscored else "")
          + f"; results in {out}/")
    if metadata.get("journal_repaired"):
        print(f"effnas: note: {metadata['journal_repaired']}", file=sys.stderr)
    if metadata.get("stopped_short"):
        short = metadata["stopped_short"]
        print(f"effnas: only {short['scored']} of --trials {short['trials']} candidates could fit after "
              f"{short['proposals']} proposals: the budget sits near the fastest the space gets; raise it, or "
              "search a space with smaller choices (--space)", file=sys.stderr)
    if metadata["trials_failed"]:
        print(f"  {metadata['trials_failed']} trials failed (estimator); first: {metadata['first_failure']}")
    for target in targets:
        print(f"  {target.name}: predicted latency kept under each budget with {target.rule}")
    scored = f"  scored by {estimator.name}" + (f" on {estimator.data}" if estimator.reads_images else
                                                  " (it reads no images)")
    if refinement:
        scored += (f"; refined by {refinement.epochs}-epoch training of {refinement.candidates} per budget (spread "
                   f"over resolutions and depths) on {refinement.data} (--refine 0: off)")
    if measurement:
        scored += (f"; the best {measurement.candidates} per budget timed here as deployed, those over the budget "
                   "dropped (measured.json)")
    print(scored)
    for label, best in metadata["best"].items():
        latency = ", ".join(f"{v:.3f} ms on {k} (limit {best['limit_ms'][k]:.3f} ms{_chance(best, k)})"
                            for k, v in best["predicted_latency_ms"].items())
        refined = f", val top-1 {best['refined_top1']:.1f}% after refinement" if "refined_top1" in best else ""
        if "measured_latency_ms" in best:
            verdict = best["measured_verdict"]
            latency += "; measured " + ", ".join(f"{v:.3f} ms" for v in best["measured_latency_ms"].values()) + (
                f" vs {verdict['budget_ms']:.3f} ms ({verdict['share']:.0%} of the budget"
                + (", the model measured beside it)" if verdict["model_ms"] is not None else ")"))
        print(f"  {label:>7}: {best['name']}  {best['score']:.2f} ({estimator.score_label}){refined}  {latency}  "
              f"params {best['params'] / 1e6:.2f}M  MACs {best['macs'] / 1e6:.0f}M")
        if "picked_by" in best:
            print(learned_nothing(label, best, refinement), file=sys.stderr)
    primary = targets[0]
    missing = [b for b in primary.budgets_ms if primary.label(b) not in metadata["best"]]
    timed = metadata["measurement"]["per_budget"] if measurement else {}
    unmeasured = [b for b in missing if not timed.get(primary.label(b), {}).get("timed")]  # none within the limit
    if unmeasured:
        lowest = ", ".join(f"{v:.3f} ms on {k}" for k, v in metadata["lowest_latency_ms"].items()) or "none"
        limits = ", ".join(f"{primary.label(b)} (predicted <= {primary.limit_ms(b):.3f} ms with {primary.rule})"
                           for b in unmeasured)
        sys.stderr.write(f"effnas: no arch found within {limits}; the lowest predicted latency reached was "
                         f"{lowest}; raise --trials or the budget\n")
    for budget in (b for b in missing if b not in unmeasured):
        finalists = timed[primary.label(budget)]
        more = " raise --measure (more finalists)," if len(finalists["timed"]) == measurement.candidates else ""
        sys.stderr.write(f"effnas: no finalist measured within {primary.label(budget)}: {len(finalists['timed'])} "
                         f"timed, the fastest {finalists['lowest_measured_ms']:.3f} ms;{more} lower the "
                         f"predicted limit ({primary.rule}) or raise the budget\n")
    return NO_ARCH_FOR_A_BUDGET if missing else 0


def _confidences(args: argparse.Namespace, tables: list, margin: float | None, measure: int, out: Path
                 ) -> list[float | None]:
    """Each target's confidence: the one given; none under --margin; a resumed search's own (a default that
    moved since it started must not refuse the user's repeated command); else 0.5 for a first target whose
    finalists are timed (the measurement keeps its budget) and 0.95 for the rest."""
    from ..search import DEFAULT_CONFIDENCE, MEASURED_CONFIDENCE
    from ..search._study import started_with

    if args.confidence is not None or margin is not None:
        return [args.confidence] * len(tables)
    stored = (started_with(out, "confidence") or {}) if args.resume else {}
    defaults = [MEASURED_CONFIDENCE if measure and i == 0 else DEFAULT_CONFIDENCE for i in range(len(tables))]
    return [stored.get(t.target) or d for t, d in zip(tables, defaults)]


def learned_nothing(label: str, best: dict, refinement: Refinement) -> str:
    """One line for a budget whose refined candidates all stayed at chance: what was seen, what to do."""
    seen, chance = best["refinement"]["best_top1"], best["refinement"]["chance"]
    return (f"effnas: refinement learned nothing at {label}: the best of {len(best['refined_candidates'])} candidates "
            f"reached {seen:.1f}% validation top-1 after {refinement.epochs} epoch"
            f"{'s' if refinement.epochs > 1 else ''}, not above chance "
            f"({chance['top1']:.1f}% + {chance['noise_se']:g} x {chance['noise']:.1f}% noise); the pick is the "
            f"proxy's first, not a refined one. Try more --refine-epochs, --refine-recipe small, or more images "
            "per class")


def default_refine(space: SearchSpace, data: str | None) -> int:
    """With the user's data, refine one candidate per resolution of the space; without, nothing to train on.

    On the shapes task every zero-cost proxy picked one resolution and one block per stage, and
    the default search lost to M0-M3 by 4-13 test points; refined this way it came level with them
    or ahead (docs/BENCHMARKS.md, "The search against the M-series")."""
    return len(space.resolutions) if data is not None else 0


def checked_data(spec: str, estimator: str | None, refine: int) -> str:
    """``--data``, checked up front (a bad folder is one line before the search, not a failed trial); a
    folder as an absolute path, so Ray workers (which run elsewhere) and a resume find the same one."""
    from ..estimators import estimators_with, option_defaults
    from ..train.data import BUILTIN_DATASETS, open_data

    if "data" not in option_defaults(estimator) and not refine:
        readers = ", ".join(estimators_with("data"))
        raise EffNasError(f"--data is read by the estimators that look at images ({readers}) and by --refine, but "
                          f"the estimator is {estimator} and --refine is off; pick one of those or drop --data")
    open_data(spec)
    return spec if spec in BUILTIN_DATASETS else str(Path(spec).resolve())


def _chance(best: dict, target: str) -> str:
    """", within budget with probability 0.97", or nothing when there are no residuals to say it."""
    chance = best["probability_within_budget"][target]
    return "" if chance is None else f", within budget with probability {chance:.2f}"


def _backend(args: argparse.Namespace) -> SearchBackend:
    """The backend with its flags; the Ray flags mean nothing to the Optuna backend, so there they are refused."""
    from ..search import create_backend

    ray_flags = {"address": args.address, "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial}
    given = {k: v for k, v in ray_flags.items() if v is not None}
    if given and args.backend != "ray":
        flag = "--" + next(iter(given)).replace("_", "-")
        raise EffNasError(f"{flag} is read by --backend ray, but the backend is {args.backend}; add --backend ray "
                          f"or drop {flag}")
    workers = {} if args.workers is None else {"workers": args.workers}
    return create_backend(args.backend, **given, **workers)
