"""Zero-cost proxies: a score from one or two mini-batches through the untrained network.

Each is computed at the arch's own input resolution (what it is deployed and trained at: resolution
is a knob the search trades against width and depth, and a score blind to it cannot see the
trade) or at a fixed ``resolution`` option, on the search's data (``effnas search --data``; the
built-in noisy digits by default), from a seeded initialisation and seeded batches, so the same arch
always gets the same score. Written from the papers:

- ``grad-norm`` (Abdelfattah et al., ICLR 2021): the summed L2 norms of the loss gradients of every
  conv and linear weight after one batch.
- ``synflow`` (Tanaka et al., NeurIPS 2020; as a NAS proxy by Abdelfattah et al.): with every
  weight replaced by its absolute value and an all-ones input, sum over parameters of
  |theta * dR/dtheta| for R the summed output, in float64 to stay finite. Data-free.
- ``naswot`` (Mellor et al., ICML 2021): the binary ReLU activation pattern of each image of a
  batch; log|det K| with K[i, j] the number of units on which images i and j agree.
- ``zico`` (Li et al., ICLR 2023): per-weight gradients over several batches; sum over layers of
  log(sum over the layer's weights of mean|g| / std(g)).
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..arch import Arch
from ..errors import EffNasError
from ._base import AccuracyEstimator, register_estimator

if TYPE_CHECKING:
    import torch

__all__ = ["ZeroCostProxy", "GradNorm", "Synflow", "Naswot", "Zico", "PROXY_RESOLUTION", "OWN_RESOLUTION",
           "scoring_resolution"]

# ``resolution`` 0: each arch at its own. The first ground-truth study (noisy digits, a 32 px set)
# trained and scored every network at 64 px, which hid resolution from every estimator; the
# study on ``shapes`` (96 px native) scores at the arch's own (docs/ESTIMATORS.md).
OWN_RESOLUTION = 0
PROXY_RESOLUTION = OWN_RESOLUTION
PROXY_DATA = "noisy-digits"
# synflow alone keeps a fixed side: it reads no image (an all-ones input), and the network's mean
# pooling makes its score nearly blind to the input size anyway (it moves only through borders and
# window padding): on 24 archs of the default space, synflow at each arch's own resolution and at
# 64 px rank them with Spearman 0.97, at twice the cost (scripts/bench_synflow_resolution.py,
# docs/BENCHMARKS.md). The search's default estimator must stay cheap.
SYNFLOW_RESOLUTION = 64
# Intra-op threads while scoring. A proxy is one or two small batches through a small network: a
# second thread buys nothing measurable there (docs/BENCHMARKS.md, "Two processes at once"), and a
# process that spins two threads on cores another process also uses slows both by tens of times.
# One thread scores as fast alone and lets two searches (or Ray workers) share the cores.
PROXY_THREADS = 1


def scoring_resolution(arch: Arch, resolution: int) -> int:
    """The side an estimator looks at ``arch`` at: its own (``resolution`` 0) or the fixed one."""
    return arch.resolution if resolution == OWN_RESOLUTION else resolution


def check_resolution_option(resolution: int) -> None:
    if resolution != OWN_RESOLUTION:
        Arch.preset("m0").replace(resolution=resolution)  # the rule every arch's resolution obeys


class ZeroCostProxy(AccuracyEstimator):
    """Shared set-up: the network at its scoring resolution from a seeded init, and seeded batches."""

    batches_needed = 1
    reads_images = True

    def __init__(self, *, seed: int = 0, batch_size: int = 32, resolution: int = PROXY_RESOLUTION,
                 data: str = PROXY_DATA, threads: int = PROXY_THREADS) -> None:
        if threads < 1:
            raise EffNasError(f"estimator option threads must be at least 1, but got {threads}")
        check_resolution_option(resolution)
        self.seed, self.batch_size, self.resolution, self.data = seed, batch_size, resolution, data
        self.threads = threads
        self._batches_at: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "seed": self.seed, "batch_size": self.batch_size,
                "resolution": self.resolution, "data": self.data, "threads": self.threads}

    @cached_property
    def _data(self) -> Any:
        from ..train.data import open_data

        return open_data(self.data)

    def _batches(self, side: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The same seeded images (from the training split: scores never see validation or test) at ``side``."""
        import torch

        from ..train.data import eval_transform
        from ..train.recipe import recipe_for

        if side not in self._batches_at:
            train = self._data.train
            train.transform = eval_transform(recipe_for("auto", self.data)[1], side)
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))
            batches = []
            for b in range(self.batches_needed):
                picked = order[b * self.batch_size:(b + 1) * self.batch_size]
                items = [train[int(i)] for i in picked]
                batches.append((torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])))
            self._batches_at[side] = batches
        return self._batches_at[side]

    def _scored(self, arch: Arch) -> Arch:
        return arch.replace(resolution=scoring_resolution(arch, self.resolution))

    def _model(self, arch: Arch) -> torch.nn.Module:
        import torch

        from ..model import build_model

        torch.manual_seed(self.seed)
        return build_model(self._scored(arch), num_classes=self._classes)

    @cached_property
    def _classes(self) -> int:
        from ..train.data import class_count

        return class_count(self.data)  # without loading images: synflow reads none

    def score(self, arch: Arch) -> float:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.random.fork_rng():
                value = self._compute(arch)
        finally:
            torch.set_num_threads(threads)
        return self.check_score(arch, value)

    def _compute(self, arch: Arch) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """Conv and linear weights: what the proxies' papers sum over."""
    import torch

    return [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


@register_estimator
class GradNorm(ZeroCostProxy):
    name = "grad-norm"
    description = "sum of the L2 norms of the weight gradients after one batch (Abdelfattah et al. 2021)"

    def _compute(self, arch: Arch) -> float:
        import torch

        model = self._model(arch).train()
        images, labels = self._batches(self._scored(arch).resolution)[0]
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        return sum(w.grad.norm().item() for w in _weights(model) if w.grad is not None)


@register_estimator
class Synflow(ZeroCostProxy):
    name = "synflow"
    score_label = "synflow score (log)"
    description = "synaptic flow: sum |theta * dR/dtheta| with |weights| and an all-ones input (Tanaka et al. 2020)"
    reads_images = False  # the data gives only the class count

    def __init__(self, *, seed: int = 0, batch_size: int = 32, resolution: int = SYNFLOW_RESOLUTION,
                 data: str = PROXY_DATA, threads: int = PROXY_THREADS) -> None:
        super().__init__(seed=seed, batch_size=batch_size, resolution=resolution, data=data, threads=threads)

    def _compute(self, arch: Arch) -> float:
        import torch

        model = self._model(arch).double().eval()  # eval: BN is a fixed affine map of the fresh statistics
        with torch.no_grad():
            for param in model.parameters():
                param.abs_()
        side = self._scored(arch).resolution
        ones = torch.ones(1, 3, side, side, dtype=torch.float64)
        model(ones).sum().backward()
        total = sum((w * w.grad).abs().sum().item() for w in _weights(model) if w.grad is not None)
        return math.log(total) if total > 0 else -math.inf


@register_estimator
class Naswot(ZeroCostProxy):
    name = "naswot"
    score_label = "naswot score (log|det K|)"
    description = "log|det| of the ReLU-pattern agreement kernel over a batch (Mellor et al. 2021)"

    def _compute(self, arch: Arch) -> float:
        import torch

        model = self._model(arch).train()
        images, _ = self._batches(self._scored(arch).resolution)[0]
        codes: list[torch.Tensor] = []

        def record(_module: Any, _inputs: Any, output: torch.Tensor) -> None:
            # inside windowed attention the batch is (image x window), image-major: one row per image
            codes.append((output.detach() > 0).reshape(len(images), -1).double())

        hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, torch.nn.ReLU)]
        with torch.no_grad():
            model(images)
        for hook in hooks:
            hook.remove()
        c = torch.cat(codes, dim=1)
        kernel = c @ c.T + (1 - c) @ (1 - c).T  # units on which two images agree
        return torch.linalg.slogdet(kernel).logabsdet.item()


@register_estimator
class Zico(ZeroCostProxy):
    name = "zico"
    score_label = "zico score (sum of logs)"
    description = "sum over layers of log(sum mean|grad| / std(grad)) across batches (Li et al. 2023)"
    batches_needed = 2

    def _compute(self, arch: Arch) -> float:
        import torch

        model = self._model(arch).train()
        weights = _weights(model)
        grads: list[list[torch.Tensor]] = [[] for _ in weights]
        for images, labels in self._batches(self._scored(arch).resolution):
            model.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            for i, w in enumerate(weights):
                grads[i].append(w.grad.detach().clone())
        total = 0.0
        for per_batch in grads:
            g = torch.stack(per_batch)
            std = g.std(dim=0)
            ratio = (g.abs().mean(dim=0)[std > 0] / std[std > 0]).sum().item()
            if ratio > 0:
                total += math.log(ratio)
        return total
