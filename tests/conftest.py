"""Shared fixtures."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from effvit_nas import SearchSpace

DATA = Path(__file__).parent / "data"


def pytest_configure(config):
    """The suite's own EFFNAS_HOME (tables made by name go there), for this process and every effnas it
    starts: a test run must neither read nor change the tables of whoever runs it."""
    home = Path(tempfile.mkdtemp(prefix="effnas-home-"))
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))
    os.environ["EFFNAS_HOME"] = str(home)


@pytest.fixture(scope="session")
def space() -> SearchSpace:
    return SearchSpace.default()


@pytest.fixture(scope="session")
def ort_threads() -> int:
    """onnxruntime's pool is sized once per process; every timing test asks for that size."""
    from effvit_nas._ort import onnx_pool_threads

    return onnx_pool_threads() or min(2, os.cpu_count() or 1)


@pytest.fixture(scope="session")
def tiny_space() -> SearchSpace:
    return SearchSpace.from_yaml(DATA / "tiny_space.yaml")


@pytest.fixture(scope="session")
def tiny_table_path(tmp_path_factory, tiny_space, ort_threads):
    """A real table of the tiny space, measured here once per test session (a few seconds)."""
    from effvit_nas.latency.build import build_table
    from effvit_nas.latency.runtimes import RuntimeConfig

    path = tmp_path_factory.mktemp("tables") / "tiny.json"
    build_table("tiny", path, RuntimeConfig(threads=ort_threads), tiny_space, tiny_settings())
    return path


# Quick windows for tests: a few short bursts each, no minimum time. The machine's state is whatever it
# is; these tables are for wiring, their fidelity is measured by the benchmarks.
QUICK_BLOCKS = dict(rewarm_ms=0.5, burst_ms=1.0, min_calls=1, max_calls=3, warmup_calls=2, min_bursts=3,
                    min_seconds=0.0)
QUICK_RULE = dict(rewarm_ms=2.0, burst_ms=5.0, min_calls=2, max_calls=5, warmup_calls=3, gap_ms=5.0, min_bursts=3,
                  min_seconds=0.0)


def quick_rule(**changes):
    from effvit_nas.latency.deploy import DeploymentRule

    return DeploymentRule(**{**QUICK_RULE, **changes})


def tiny_settings():
    from effvit_nas.latency.build import BuildSettings, CheckBar
    from effvit_nas.latency.measure import SweepProtocol

    # a bar nothing misses: a tiny table on a busy test machine is for wiring, its fidelity is checked apart
    return BuildSettings(quota=(("attention", 10), ("merge", 6)), calibration_archs=8, check_archs=4,
                         blocks=SweepProtocol(**QUICK_BLOCKS), rule=quick_rule(),
                         bar=CheckBar(max_median_err=float("inf"), min_within_10pct=0))


@pytest.fixture(scope="session")
def tiny_arch_yaml(tmp_path_factory, tiny_space) -> Path:
    """The tiny space's smallest arch (64 px): trains on digits in about a second per epoch."""
    path = tmp_path_factory.mktemp("archs") / "tiny.yaml"
    tiny_space.smallest().replace(name="tiny").to_yaml(path)
    return path


def tiny_recipe(epochs: int = 2):
    from effvit_nas.train.recipe import SMALL

    return SMALL.updated({"epochs": str(epochs), "warmup_epochs": "0.5"})


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory, tiny_arch_yaml) -> Path:
    """A run directory of the tiny arch trained 2 epochs on digits (checkpoint, metrics, curves)."""
    from effvit_nas import Arch
    from effvit_nas.train import TrainSettings, train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(TrainSettings(arch=Arch.from_yaml(tiny_arch_yaml), data="digits", recipe=tiny_recipe(), out_dir=out))
    return out


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster for the Ray tests (they share a module; start-up costs seconds): 2 CPUs,
    no dashboard, stopped after them so its idle processes do not slow the rest of the suite.
    Yields its address, so a driver in a subprocess can join it as a user's would (--address)."""
    import ray
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()
