#!/usr/bin/env bash
# End to end on this machine: search -> export -> train on digits -> verify on the target.
#
#   bash scripts/e2e.sh [OUT]        (default OUT: runs/e2e; it is replaced)
#
# TARGET, BUDGET, EPOCHS and SEARCH_ARGS (extra search flags, e.g. "--estimator size-prior --margin 0")
# can be set in the environment. The shipped table describes the 2-core
# AMD EPYC VM it was measured on; elsewhere verify refuses: build a table for your machine first
# (effnas table build --target NAME) and pass TARGET=NAME. Stage times go to OUT/e2e.json.
set -euo pipefail
OUT=${1:-runs/e2e}
TARGET=${TARGET:-amd-epyc-2core-ort-b1}
BUDGET=${BUDGET:-2ms}
EPOCHS=${EPOCHS:-10}
MIN_TOP1=${MIN_TOP1:-97}
read -r -a SEARCH_EXTRA <<< "${SEARCH_ARGS:-}"

rm -rf "$OUT"
mkdir -p "$OUT"
declare -A SECONDS_OF
stage() {  # stage NAME COMMAND...: run and time one step
    local name=$1; shift
    echo "== $name: $*"
    local start=$SECONDS
    "$@"
    SECONDS_OF[$name]=$((SECONDS - start))
}

stage search effnas search --target "$TARGET" --budget "$BUDGET" --out "$OUT/search" "${SEARCH_EXTRA[@]}"
stage export effnas export "$OUT/search/best.yaml" --onnx "$OUT/export/model.onnx"
stage train effnas train "$OUT/search/best.yaml" --data digits --epochs "$EPOCHS" --out "$OUT/train"
verify_rc=0
stage verify effnas verify "$OUT/search/best.yaml" --target "$TARGET" --budget "$BUDGET" \
    --checkpoint "$OUT/train/checkpoint.pt" --data digits --out "$OUT/verify" || verify_rc=$?

python - "$OUT" "$MIN_TOP1" "$verify_rc" "${SECONDS_OF[search]}" "${SECONDS_OF[export]}" "${SECONDS_OF[train]}" \
    "${SECONDS_OF[verify]:-0}" <<'PY'
import json, sys
out, min_top1, verify_rc = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
seconds = dict(zip(["search", "export", "train", "verify"], map(int, sys.argv[4:8])))
report = json.load(open(f"{out}/verify/verify.json"))
summary = {
    "arch": report["name"], "budget_ms": report["budget_ms"], "predicted_ms": report["predicted_ms"],
    "measured_ms": report["latency"]["measured_ms"], "within_budget": report["within_budget"],
    "top1": report["accuracy"]["top1"], "min_top1": min_top1, "seconds": seconds, "total_s": sum(seconds.values()),
}
json.dump(summary, open(f"{out}/e2e.json", "w"), indent=1)
print(json.dumps(summary, indent=1))
ok = verify_rc == 0 and summary["top1"] >= min_top1
print("E2E PASSED" if ok else f"E2E FAILED (verify exit {verify_rc}, top-1 {summary['top1']:.2f}% vs {min_top1}%)")
sys.exit(0 if ok else 1)
PY
