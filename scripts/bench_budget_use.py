"""How much of each budget the default search uses, and whether its picks measure within it.

    python scripts/bench_budget_use.py [--target amd-epyc-2core-ort-b1] [--budget 1.5ms,2ms,3ms,5ms]
                                       [--seed 0] [--name NAME]

Runs the family search as a user does (``effnas search --target T --budget B``: synflow, confidence
0.95, 300 trials, predictions only), then judges every pick on this machine as ``verify`` does
(``latency/judge.py``: one window of the deployment rule beside the reference; a model budget beside
its model). Per budget: the pick's predicted latency over its budget (what the search thinks it uses),
its limit (budget / q), its measured figure over the budget (what it really uses) and the verdict;
the machine's movement during the window beside them. Writes docs/results/budget_use_<name>.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from _results import save_result

from effvit_nas import Arch
from effvit_nas.budget import parse_budgets
from effvit_nas.latency.judge import judge
from effvit_nas.latency.table import LatencyTable


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="amd-epyc-2core-ort-b1")
    parser.add_argument("--budget", default="1.5ms,2ms,3ms,5ms")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    table = LatencyTable.load(args.target)
    budgets = parse_budgets(args.budget)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        search = [sys.executable, "-m", "effvit_nas", "search", "--target", args.target, "--budget", args.budget,
                  "--seed", str(args.seed), "--out", str(out)]
        done = subprocess.run(search, capture_output=True, text=True)
        if done.returncode not in (0, 1):
            raise SystemExit(f"the search failed: {done.stderr.strip()[-500:]}")
        picks = {}
        for budget in budgets:
            path = out / (f"best-{budget.label}.yaml" if len(budgets) > 1 else "best.yaml")
            if path.exists():
                picks[budget.label] = (budget, Arch.from_yaml(path), yaml.safe_load(path.read_text())["metadata"])
    judgement = judge(table.runtime, {label: arch for label, (_, arch, _) in picks.items()},
                      {label: [budget] for label, (budget, _, _) in picks.items()},
                      reference_ms=table.deployment_reference_ms)
    rows = []
    for label, (_, arch, info) in picks.items():
        verdict = judgement.verdicts[label][label]
        predicted, limit = info["predicted_latency_ms"][table.target], info["limit_ms"][table.target]
        rows.append({"budget": label, "arch_id": arch.arch_id, "arch": arch.to_dict(), "predicted_ms": predicted,
                     "budget_ms_as_searched": info["budget_ms"], "limit_ms": limit,
                     "predicted_share": predicted / info["budget_ms"], "share_of_limit": predicted / limit,
                     **verdict.to_dict()})
    missing = [b.label for b in budgets if b.label not in picks]
    machine = judgement.run.machine()
    print(f"{args.target}, --budget {args.budget}: this machine moved {machine['moved']:.2f}x during the window, "
          f"reference at x{table.reference_ratio(machine['reference_ms']):.3f} of the table's")
    print("| budget | pick | predicted / budget | predicted / limit | measured ms | measured / budget | within |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['budget']} | `{r['arch_id']}` | {r['predicted_share']:.0%} | {r['share_of_limit']:.0%} | "
              f"{r['measured_ms']:.3f} | {r['share']:.0%} | {'yes' if r['within'] else 'NO'} |")
    if missing:
        print(f"no pick for {', '.join(missing)}: {done.stderr.strip()[-300:]}")
    name = args.name or table.target
    command = "python scripts/bench_budget_use.py " + " ".join(argv)
    path = save_result(f"budget_use_{name}", command.strip(),
                       {"target": table.target, "table": table.table_id, "family": args.budget, "seed": args.seed,
                        "machine": machine, "reference_ratio": table.reference_ratio(machine["reference_ms"]),
                        "rows": rows, "no_pick": missing,
                        "within": sum(r["within"] for r in rows), "picks": len(rows)})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
