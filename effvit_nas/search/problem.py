"""What a search optimises: an estimator's score, under latency budgets on one or more tables.

The search never touches a network: it talks to ``estimator.score(arch)`` and to
``table.predict_ms(arch)`` only, so estimators, tables and backends swap independently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from ..arch import PRESETS, Arch
from ..budget import Budget
from ..errors import EffNasError
from ..estimators import AccuracyEstimator
from ..latency.table import LatencyTable
from ..space import SearchSpace
from ..units import format_ms

__all__ = ["Target", "Evaluation", "SearchProblem", "predicted_latency", "violations", "DEFAULT_CONFIDENCE"]


DEFAULT_CONFIDENCE = 0.95  # what ``effnas search`` uses unless --margin or --confidence says otherwise


@dataclass(frozen=True)
class Target:
    """A table and the budgets on it. Several budgets on one target make a family (M0..M5-like):
    each budget gets its own best arch, and the search aims at each in turn (``SearchProblem.aims``).

    How far below a budget the predicted latency must stay is one of two rules. ``confidence``:
    predicted <= budget / q, with q the table's split-conformal quantile of its validation residuals
    (measured / predicted), so the budget holds with at least that probability. ``margin``: a fixed
    headroom, predicted <= budget x (1 - margin). Neither: the budget as is.

    ``given``: the budgets as the user gave them (``Target.of``), where one may name a model (``m1``): its
    entry in ``budgets_ms`` is the table's prediction of that model (times its factor), and its label,
    measurement and judgement go by the model (``budget_for``)."""

    table: LatencyTable
    budgets_ms: tuple[float, ...]
    margin: float | None = None
    confidence: float | None = None
    given: tuple[Budget, ...] = ()

    @classmethod
    def of(cls, table: LatencyTable, budgets: list[Budget], margin: float | None = None,
           confidence: float | None = None) -> Target:
        """A target from budgets as given: a model budget held at the table's prediction of the model."""
        resolved = []
        for budget in budgets:
            if budget.model is not None and table.space.why_not(budget.model) is not None:
                raise EffNasError(
                    f"a model budget's model must lie in table {table.target!r}'s space to be predicted, but "
                    f"{budget.label} is {budget.describe()}: {table.space.why_not(budget.model)}; name it at a "
                    f"resolution of the space, e.g. {budget.label.split('@')[0]}@{table.space.resolutions[-1]}")
            resolved.append(budget.resolve_ms(table.predict_ms))
        if len(set(resolved)) != len(resolved):
            raise EffNasError(f"budgets must differ from each other on {table.target!r}, but "
                              f"{', '.join(b.label for b in budgets)} come to the same latency there")
        ordered = sorted(zip(resolved, budgets), key=lambda pair: pair[0])
        return cls(table, tuple(ms for ms, _ in ordered), margin, confidence, tuple(b for _, b in ordered))

    def __post_init__(self) -> None:
        if self.margin is not None and self.confidence is not None:
            raise EffNasError(f"a target takes --confidence or --margin, not both, but got confidence "
                              f"{self.confidence:g} and margin {self.margin * 100:g}%; drop one")
        if self.margin is not None and not 0 <= self.margin < 0.5:
            raise EffNasError(f"--margin must be between 0% and 50%, but got {self.margin * 100:g}%")
        if self.confidence is not None:
            if not 0 < self.confidence < 1:  # ``not`` also refuses NaN
                raise EffNasError(f"--confidence must lie strictly between 0 and 1, but got {self.confidence!r}; "
                                  f"pass e.g. {DEFAULT_CONFIDENCE}")
            _ = self.ratio_quantile  # too few residuals for the confidence: refused here, not mid-search

    @property
    def name(self) -> str:
        return self.table.target

    def budget_for(self, budget_ms: float) -> Budget:
        """The budget as given behind one of ``budgets_ms`` (a time budget when none was given)."""
        for ms, budget in zip(self.budgets_ms, self.given):
            if ms == budget_ms:
                return budget
        return Budget(format_ms(budget_ms), ms=budget_ms)

    def label(self, budget_ms: float) -> str:
        """How results name the budget: ``2ms``, or the model's ``m1``."""
        return self.budget_for(budget_ms).label

    @cached_property
    def ratio_quantile(self) -> float | None:
        """The factor q (measured <= q x predicted at ``confidence``) the limits divide by; None under a margin."""
        return None if self.confidence is None else self.table.ratio_quantile(self.confidence)

    @property
    def rule(self) -> str:
        """The rule from budget to limit, for messages: "the 5% margin", "the confidence factor ..."."""
        if self.ratio_quantile is not None:
            return f"the confidence factor {self.ratio_quantile:.3f} at confidence {self.confidence:g}"
        return "no margin" if self.margin is None else f"the {self.margin * 100:g}% margin"

    def limit_ms(self, budget_ms: float) -> float:
        """The predicted latency an arch may have to count as within ``budget_ms``."""
        if self.ratio_quantile is not None:
            return budget_ms / self.ratio_quantile
        return budget_ms * (1 - (self.margin or 0.0))

    @property
    def constraint_ms(self) -> float:
        return self.limit_ms(max(self.budgets_ms))

    def budget_report(self, budget_ms: float, predicted_ms: float) -> dict[str, float | None]:
        """What a result says about one budget: the limit and the rule that gave it, and the chance that
        a network predicted at ``predicted_ms`` measures within the budget (None: no residuals to say)."""
        chance = self.table.probability_within(predicted_ms, budget_ms)
        return {"limit_ms": self.limit_ms(budget_ms), "confidence": self.confidence,
                "ratio_quantile": self.ratio_quantile, "margin": self.margin, "probability_within_budget": chance}


def predicted_latency(targets: list[Target], arch: Arch) -> tuple[dict[str, float], dict[str, float]]:
    """Latency per target and its excess over the target's constraint (feasible when all <= 0)."""
    latency = {t.name: t.table.predict_ms(arch) for t in targets}
    return latency, violations(targets, latency)


def violations(targets: list[Target], latency_ms: dict[str, float],
               aim_ms: float | None = None) -> dict[str, float]:
    """Each target's latency minus its constraint (feasible when all <= 0). ``aim_ms``: the first target is
    held to that budget's limit instead of its largest budget's (a family's search phase)."""
    return {t.name: latency_ms[t.name] - (t.limit_ms(aim_ms) if aim_ms is not None and i == 0 else t.constraint_ms)
            for i, t in enumerate(targets)}


@dataclass(frozen=True)
class Evaluation:
    score: float
    latency_ms: dict[str, float]  # per target name
    violations_ms: dict[str, float]  # latency - budget per target; feasible when all <= 0

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.violations_ms.values())


@dataclass
class SearchProblem:
    space: SearchSpace
    targets: list[Target]
    estimator: AccuracyEstimator
    # M0-M5 (where the space holds them) as the first trials: a user's search starts from the
    # hand-designed family. Off, the search must find its way alone (what a test of the sampler needs).
    seed_with_references: bool = True
    _cache: dict[Arch, Evaluation] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.targets:
            raise EffNasError("a search needs at least one --target with a --budget")
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise EffNasError(f"each --target must appear once, but got {names}")
        for target in self.targets:
            target.table.check_covers(self.space)
        self.estimator.check_space(self.space)
        self.check_budgets()

    @property
    def primary(self) -> Target:
        """The first target: its latency is the second objective and names the found variants."""
        return self.targets[0]

    def fastest(self, target: Target) -> Arch:
        """The space's fastest arch on a target: its smallest, with whichever window choice predicts
        lowest (a window that covers the map can beat a padded smaller one)."""
        smallest = self.space.smallest()
        candidates = {smallest}
        for windows in {(w,) * 3 for s in self.space.stages for w in s.window_sizes}:
            try:
                candidate = smallest.replace(window_sizes=windows)
            except EffNasError:
                continue
            if self.space.contains(candidate):
                candidates.add(candidate)
        return min(candidates, key=lambda a: (target.table.predict_ms(a), a.to_dict().__repr__()))

    def smallest_latency_ms(self, target: Target) -> float:
        """The fastest the space gets on a target (``fastest``'s predicted latency)."""
        return target.table.predict_ms(self.fastest(target))

    def check_budgets(self) -> None:
        """Fail fast, with the number, when a budget is below what the space can reach."""
        for target in self.targets:
            floor = self.smallest_latency_ms(target)
            low = [b for b in target.budgets_ms if target.limit_ms(b) < floor]
            if low:
                need = floor * low[0] / target.limit_ms(low[0])  # the limit is proportional to the budget
                raise EffNasError(
                    f"budget must be at least the smallest latency the space reaches on {target.name!r} "
                    f"({floor:.3f} ms, its smallest arch) with {target.rule}, that is {need:.3f} ms, but got "
                    f"{', '.join(target.label(b) for b in low)}; "
                    "raise the budget or search a space with smaller choices (--space)"
                )

    def aims(self, trials: int) -> list[tuple[int, float]]:
        """(first trial, budget) of each search phase: a family's trials go to its primary budgets in turn,
        smallest first, an equal share each, every phase sampling with the whole history held to its own
        budget. Held to the largest budget alone, a sampler drawn to high scores never visited the small
        end (``--budget 1.5ms,2ms,3ms,5ms``: nothing under 2 ms in 300 trials). Each trial still counts for
        every budget it fits (``results.best_per_budget``). One budget: one phase, the whole search."""
        budgets = sorted(set(self.primary.budgets_ms))
        return [(-(-k * trials // len(budgets)), budget) for k, budget in enumerate(budgets)]  # ceil(k*trials/n)

    def can_fit(self, latency_ms: dict[str, float], aim_ms: float | None = None) -> bool:
        """Whether an arch predicted at ``latency_ms`` meets some budget's limit on every target (``aim_ms``:
        that budget's, a family's search phase): one that does not can never be picked (there), so a backend
        tells the study it is infeasible without scoring it (its constraint is known before any score)."""
        return all(v <= 0 for v in violations(self.targets, latency_ms, aim_ms).values())

    def latency(self, arch: Arch) -> tuple[dict[str, float], dict[str, float]]:
        """Predicted latency per target and its excess over the constraint (feasible when all <= 0).
        Table lookups only: cheap, so a search backend can set constraints before scoring."""
        return predicted_latency(self.targets, arch)

    def evaluate(self, arch: Arch) -> Evaluation:
        """Score and latency; ``EstimatorError`` when the estimator cannot score ``arch`` (not cached)."""
        cached = self._cache.get(arch)
        if cached is None:
            cached = Evaluation(self.estimator.check_score(arch, self.estimator.score(arch)), *self.latency(arch))
            self._cache[arch] = cached
        return cached

    def known(self, arch: Arch) -> Evaluation | None:
        """The evaluation already made for ``arch``, if any."""
        return self._cache.get(arch)

    def record(self, arch: Arch, score: float) -> Evaluation:
        """An evaluation whose score was computed elsewhere (a Ray worker), cached like ``evaluate``'s."""
        self._cache[arch] = Evaluation(score, *self.latency(arch))
        return self._cache[arch]

    @cached_property
    def yardsticks(self) -> frozenset[Arch]:
        """M0–M5 (where the space holds them) and the space's fastest arch: scored even when they cannot
        fit, since results and the plot compare the picks with them (a handful of scores per search)."""
        return frozenset([*self.reference_archs().values(), self.fastest(self.primary)])

    def reference_archs(self) -> dict[str, Arch]:
        """M0–M5 where the space contains them: seeded into the search (``seed_with_references``, with
        ``fastest``) and plotted beside it."""
        presets = {name.upper(): Arch.preset(name) for name in PRESETS}
        return {name: arch for name, arch in presets.items() if self.space.contains(arch)}
