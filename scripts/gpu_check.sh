#!/usr/bin/env bash
# GPU check, about 9 minutes on one GPU: every GPU path of effvit-nas run once, each step under `timeout`
# (never past the time limit), its result kept whether or not the others pass.
#
#   bash scripts/gpu_check.sh                 (TIME_LIMIT=540 seconds; later steps are skipped past it)
#   ONLY="tests|train-det-2" bash ...         (some steps again; summary.json gains a run)
#
# Steps, in this order: first what no GPU has run on the current code (on an H200 these took ~530 s:
# the table's fresh processes dominate), then what an earlier run already showed:
#   info           GPU name, driver, power limit, torch/CUDA/cuDNN
#   train-det-1    `effnas train` one epoch on digits on the GPU, --deterministic (its checkpoint is verified)
#   <rt>-build     a torch CUDA (fp16) table of a micro space, then <rt>-validate under the deployment rule
#   verify         `effnas verify --checkpoint --data digits` of the trained arch against that table, the
#                  budget 10% over the table's prediction (the verdict checks the prediction)
#   search         `effnas search` on that table (Optuna, short-training estimator, device auto: must train on
#                  the GPU); verify-pick: `effnas verify` of its pick against its budget
#   tests          the CUDA tests (the runtime tests, deterministic resume, deterministic supernet)
#   train-det-2    the deterministic training again; train-repeat: both runs' figures must be identical
#   supernet       `effnas supernet train` one epoch on the GPU
#   fresh-process  where a CUDA measurement's fresh interpreter spends its seconds (a table pays it per network)
#   warmup         a fresh process's figure after 30 vs 300 warm-up calls (does a short warm-up time the clock ramp?)
#   batch-scaling  the rule's figure at batch 256 and 2048 (does the GPU or the host set the time?)
#   cuda-graph     eager torch vs the torch-cudagraph runtime in fresh processes, batch 256 and 2048
#   spread         a fresh process's figure with cudnn.benchmark on and off, and at 4x the batch
#   parent-context a fresh process's figure when its parent holds a CUDA context, as `table build`'s does
#   supernet-copies host-to-device copies and step time of supernet training, indices cached vs made afresh
#   torchrun       2 ranks: refused in one line on a 1-GPU machine, trains on 2+ GPUs
#   train          one epoch without --deterministic
#   throughput     training img/s of M0/M2/M4 and timm's efficientvit_m0 (bf16 autocast, batch 256, 224 px)
#   largest        the default space's largest arch at batch 2048: peak memory; one block fp32 vs fp16
#   memory-format  what channels_last buys M0's fp16 inference
# TensorRT joins with RUNTIMES="torch tensorrt" where `import tensorrt` works.
#
# Outputs: RESULTS (docs/validation/<gpu>-gpu-check/) holds summary.json (per run: each step's exit
# status and seconds, written after every step; a step that could not start is a failure) and each step's
# JSON or log; tables in effvit_nas/latency/tables/<gpu>-<runtime>-fp16-b<batch>-micro.json (where
# the shipped tables live, to be committed) and their validation in
# docs/validation/<that name>/.
#
# The table is smaller than a real one, to fit the time (a real one: effnas table build --target NAME
# --runtime torch --device cuda): a micro space (128 px, one width and head count per stage, depths
# 1-3: 10 distinct blocks, 27 networks) at the paper's batch 2048 (at 256 eager torch times the host's
# launches, not the GPU: docs/BENCHMARKS.md, run 5; BATCH=256 reproduces runs 3-4); the minimum 8 calibration and 3 check networks, windows of 20 s; 8 validation networks.
set -uo pipefail
cd "$(dirname "$0")/.."  # paths below are the repository's

BATCH=${BATCH:-2048}
TIME_LIMIT=${TIME_LIMIT:-540}
RUNTIMES=${RUNTIMES:-torch}
effnas() { python -m effvit_nas "$@"; }  # works from a checkout on PYTHONPATH as well as installed

python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "gpu_check: torch sees no CUDA GPU: nothing to check here (torch $(python -c 'import torch; print(torch.__version__)'))"
    exit 0
}
GPU=$(python -c 'import torch; print(torch.cuda.get_device_name())')
GPU_SLUG=$(python -c 'import re, sys; n = re.sub(r"^nvidia\s+", "", sys.argv[1].lower()); print(re.sub(r"[^a-z0-9]+", "-", n).strip("-"))' "$GPU")
RESULTS=${RESULTS:-docs/validation/$GPU_SLUG-gpu-check}
if [ -z "${WORK:-}" ]; then  # WORK=DIR keeps the trained checkpoints for a rerun with ONLY=
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
fi
export WORK
TABLES=effvit_nas/latency/tables  # written by path: a table named without one goes to the user's EFFNAS_HOME
mkdir -p "$RESULTS"
echo "== $GPU: results in $RESULTS, time limit $TIME_LIMIT s"

STARTED=$SECONDS
RUN_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
STATUS=()  # "name rc seconds" per step

write_summary() {  # this run's steps so far into summary.json (after every step: a killed check keeps its record)
    python - "$RESULTS/summary.json" "$GPU" "$RUN_AT" "$((SECONDS - STARTED))" "${STATUS[@]}" <<'PY'
import json, os, sys

out, gpu, at, total, *rows = sys.argv[1:]
steps = {name: {"exit": rc, "seconds": int(s)} for name, rc, s in (row.split() for row in rows)}
runs = json.load(open(out))["runs"] if os.path.exists(out) else []  # a rerun (ONLY=) adds to the record
runs = [r for r in runs if r["at"] != at] + [{"at": at, "total_s": int(total), "steps": steps}]
json.dump({"gpu": gpu, "runs": runs}, open(out, "w"), indent=1)
PY
}

wanted() { [ -z "${ONLY:-}" ] || [[ $1 =~ ^($ONLY)$ ]]; }  # ONLY="a|b": rerun some steps

not_run() {  # not_run NAME WHY: a step that could not start is a failure, not a silent pass
    if wanted "$1"; then STATUS+=("$1 $2 0"); write_summary; fi
}

step() {  # step NAME NEEDS_S TIMEOUT_S COMMAND...: run one step under timeout unless the time limit is near
    local name=$1 needs=$2 limit=$3 left; shift 3
    wanted "$name" || return 0
    left=$((TIME_LIMIT - SECONDS + STARTED))
    if (( needs > left )); then
        echo "== $name: skipped (needs ~${needs} s, $left s left)"
        STATUS+=("$name skipped 0")
        write_summary
        return 0
    fi
    (( limit > left )) && limit=$left  # never past the time limit, whatever the step's own timeout
    echo "== $name: $*"
    if declare -F "$1" > /dev/null; then  # a function of this script: timeout runs programs, so hand it to bash
        set -- bash -c "$(declare -f); $(printf '%q ' "$@")"
    fi
    local start=$SECONDS rc=0
    timeout --kill-after=10 "$limit" "$@" > >(tee "$RESULTS/$name.log") 2>&1 || rc=$?
    STATUS+=("$name $rc $((SECONDS - start))")
    write_summary
    echo "== $name: exit $rc in $((SECONDS - start)) s"
}

# An arch of the micro space below (all depths 1), so the table predicts what verify measures.
cat > "$WORK/micro_arch.yaml" <<'YAML'
schema_version: 1
name: gpu_check_micro_d1
resolution: 128
widths: [64, 128, 192]
depths: [1, 1, 1]
heads: [4, 4, 4]
key_dims: [16, 16, 16]
ffn_ratios: [2, 2, 2]
window_sizes: [7, 7, 7]
kernels: [5, 5, 5, 5]
YAML
cat > "$WORK/micro_space.yaml" <<'YAML'
# Depth is the only choice: every network of the space is made of the same 10 blocks.
schema_version: 1
name: gpu_check_micro
resolution: [128]
kernels: [5]
stages:
  - {width: [64], depth: [1, 2, 3], heads: [4], key_dim: [16], ffn_ratio: [2], window_size: [7]}
  - {width: [128], depth: [1, 2, 3], heads: [4], key_dim: [16], ffn_ratio: [2], window_size: [7]}
  - {width: [192], depth: [1, 2, 3], heads: [4], key_dim: [16], ffn_ratio: [2], window_size: [7]}
YAML

same_epochs() {  # two deterministic runs must agree on every figure of every epoch
    python - "$1/metrics.json" "$2/metrics.json" <<'PY'
import json, sys
a, b = (json.load(open(p))["epochs"] for p in sys.argv[1:3])
keys = [k for k in a[0] if not k.endswith(("seconds", "per_s"))]  # timings differ run to run
diff = {k: (x[k], y[k]) for x, y in zip(a, b) for k in keys if x.get(k) != y.get(k)}
print("deterministic runs identical" if not diff else f"deterministic runs differ: {diff}")
sys.exit(1 if diff else 0)
PY
}

torchrun_two_ranks() {  # on one GPU rank 1 has no GPU of its own: that must be one clear line
    local gpus rc=0
    gpus=$(python -c 'import torch; print(torch.cuda.device_count())')
    python -m torch.distributed.run --standalone --nproc_per_node 2 -m effvit_nas train "$WORK/micro_arch.yaml" \
        --data digits --epochs 1 --device cuda --out "$WORK/ddp" > "$WORK/ddp.log" 2>&1 || rc=$?
    tail -5 "$WORK/ddp.log"
    if (( gpus >= 2 )); then
        return "$rc"
    fi
    if (( rc != 0 )) && grep -q "each torchrun process needs its own GPU" "$WORK/ddp.log"; then
        echo "refused as it should on $gpus GPU"
        return 0
    fi
    echo "expected a one-line refusal on $gpus GPU, got exit $rc"
    return 1
}

build_and_validate() {  # build_and_validate RUNTIME
    local runtime=$1 name=$GPU_SLUG-$1-fp16-b$BATCH-micro
    step "$runtime-build" 200 300 effnas table build --target "$TABLES/$name.json" --runtime "$runtime" --device cuda \
        --dtype float16 --batch-size "$BATCH" --space "$WORK/micro_space.yaml" --calibration-archs 8 \
        --check-archs 3 --seconds 20 --overwrite --accept-below-bar
    if [ ! -f "$TABLES/$name.json" ]; then
        not_run "$runtime-validate" no-table
        return 0
    fi
    step "$runtime-validate" 70 200 effnas table validate --target "$TABLES/$name.json" --samples 8 --seconds 20 \
        --out "docs/validation/$name"
}

predicted_budget() {  # predicted_budget TABLE ARCH_YAML|smallest-largest: a budget in ms from the table itself
    python - "$@" "$WORK/micro_space.yaml" <<'PY'
import math, sys
from effvit_nas import Arch, SearchSpace
from effvit_nas.latency.table import LatencyTable

table, what, space = LatencyTable.load(sys.argv[1]), sys.argv[2], SearchSpace.from_yaml(sys.argv[3])
if what == "smallest-largest":  # halfway (geometrically) between the space's ends: a search has a choice to make
    ms = math.sqrt(table.predict_ms(space.smallest()) * table.predict_ms(space.largest()))
else:  # 10% over the arch's own prediction: verify's verdict then checks the table's prediction to 10%
    ms = 1.10 * table.predict_ms(Arch.from_yaml(what))
print(f"{ms:.4f}ms")
PY
}

verify_trained() {  # verify_trained TABLE: the trained arch, budget 10% over the table's prediction for it
    local budget
    budget=$(predicted_budget "$1" "$WORK/micro_arch.yaml") || return 1
    effnas verify "$WORK/micro_arch.yaml" --target "$1" --budget "$budget" --seconds 20 \
        --checkpoint "$WORK/train-det-1/checkpoint.pt" --data digits --out "$WORK/verify"
}

search_on_table() {  # search_on_table TABLE: an Optuna search whose short-training estimator must train on the GPU
    local budget
    budget=$(predicted_budget "$1" smallest-largest) || return 1
    echo "$budget" > "$WORK/search-budget"
    effnas search --target "$1" --budget "$budget" --space "$WORK/micro_space.yaml" --estimator short-training \
        --estimator-arg epochs=1 --data digits --refine 0 --trials 6 --margin 5% --out "$WORK/search" || return 1
    python -c 'import json, sys; d = json.load(open(sys.argv[1]))["estimator"]["device"]; print("the estimator trained on", d); sys.exit(d != "cuda")' \
        "$WORK/search/metadata.json"
}

# What no GPU has run yet comes first; what an earlier run showed (docs/BENCHMARKS.md) after.
step info 15 60 python scripts/gpu_probe.py info "$RESULTS/info.json"
step train-det-1 30 150 effnas train "$WORK/micro_arch.yaml" --data digits --epochs 1 --device cuda \
    --deterministic --out "$WORK/train-det-1"
cp "$WORK"/train-det-1/metrics.json "$RESULTS/train-det-1-metrics.json" 2>/dev/null
for runtime in $RUNTIMES; do
    build_and_validate "$runtime"
done
TORCH_TABLE=$TABLES/$GPU_SLUG-torch-fp16-b$BATCH-micro.json
if [ -f "$TORCH_TABLE" ] && [ -f "$WORK/train-det-1/checkpoint.pt" ]; then
    step verify 50 180 verify_trained "$TORCH_TABLE"
    cp "$WORK"/verify/verify.json "$RESULTS/verify.json" 2>/dev/null
else
    not_run verify no-table-or-checkpoint
fi
if [ -f "$TORCH_TABLE" ]; then
    step search 45 200 search_on_table "$TORCH_TABLE"
    cp "$WORK"/search/metadata.json "$RESULTS/search-metadata.json" 2>/dev/null
else
    not_run search no-table
fi
if [ -f "$WORK/search/best.yaml" ]; then
    step verify-pick 45 150 effnas verify "$WORK/search/best.yaml" --target "$TORCH_TABLE" \
        --budget "$(cat "$WORK/search-budget")" --seconds 20 --out "$WORK/verify-pick"
    cp "$WORK"/verify-pick/verify.json "$RESULTS/verify-pick.json" 2>/dev/null
else
    not_run verify-pick no-search-pick
fi
step tests 100 300 env OMP_NUM_THREADS=1 python -m pytest -q -p no:cacheprovider tests/latency/test_runtime_gpu.py \
    tests/train/test_loop.py::test_resume_after_a_kill_mid_epoch_matches_an_uninterrupted_run \
    tests/supernet/test_training.py::test_an_interrupted_run_resumes_to_the_same_weights
step train-det-2 30 150 effnas train "$WORK/micro_arch.yaml" --data digits --epochs 1 --device cuda \
    --deterministic --out "$WORK/train-det-2"
if [ -f "$WORK/train-det-1/metrics.json" ] && [ -f "$WORK/train-det-2/metrics.json" ]; then
    step train-repeat 5 30 same_epochs "$WORK/train-det-1" "$WORK/train-det-2"
elif wanted train-repeat; then  # a training skipped for time (or failed: recorded there): nothing to compare
    STATUS+=("train-repeat skipped 0")
    write_summary
fi
step supernet 30 200 effnas supernet train --space tests/data/tiny_space.yaml --data digits --img-size 64 \
    --epochs 1 --device cuda --out "$WORK/supernet"
cp "$WORK"/supernet/metrics.json "$RESULTS/supernet-metrics.json" 2>/dev/null
step fresh-process 40 120 python scripts/gpu_probe.py fresh-process "$RESULTS/fresh_process.json"
step batch-scaling 60 120 python scripts/gpu_probe.py batch-scaling "$RESULTS/batch_scaling.json"
step cuda-graph 100 200 python scripts/gpu_probe.py cuda-graph "$RESULTS/cuda_graph.json"
step supernet-copies 30 120 python scripts/gpu_probe.py supernet-copies "$RESULTS/supernet_copies.json"
step torchrun 20 150 torchrun_two_ranks
step train 30 150 effnas train "$WORK/micro_arch.yaml" --data digits --epochs 1 --device cuda --out "$WORK/train"
step throughput 80 150 python scripts/gpu_probe.py throughput "$RESULTS/throughput.json"
step largest 15 120 python scripts/gpu_probe.py largest "$RESULTS/largest.json"
step memory-format 15 90 python scripts/gpu_probe.py memory-format "$RESULTS/memory_format.json"

TOTAL=$((SECONDS - STARTED))
write_summary
echo
echo "== done in $TOTAL s; steps (name exit seconds):"
printf '   %s\n' "${STATUS[@]}"
failed=$(printf '%s\n' "${STATUS[@]}" | awk '$2 != "0" && $2 != "skipped" {print $1}' | tr '\n' ' ')
[ -z "$failed" ] || { echo "gpu_check: FAILED: $failed(logs in $RESULTS)"; exit 1; }
echo "GPU CHECK PASSED"
