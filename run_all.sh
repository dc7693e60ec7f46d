#!/usr/bin/env bash
# Reproduce every table: every estimator x every task family x its seeds, then the report.
#
#   ./run_all.sh                   quick preset on offline data (45-50 minutes on 2 CPU cores)
#   ./run_all.sh --preset paper    the recipes SURGE compares against (GPU machines; days): ReCU's on
#                                  CIFAR-10 ResNet-20/18, VGG-Small and ImageNet ResNet-18, BiDet's
#                                  Faster R-CNN R18-C4 on VOC (from an ImageNet ResNet-18 file:
#                                  --backbone-checkpoint FILE, a path without spaces or commas),
#                                  GLUE's paper preset on the nine tasks
#
# Options: --preset quick|paper, --seeds "0 1 2", --db URL, --data-root DIR, --estimators "a b",
#          --jobs N (runs at once, default 1), --isolation pool|process (local executor: long-lived
#          workers, the default, or a process per run), --executor local|slurm (with --slurm key=value ...).
# Seeds unless --seeds is given: quick classification 0-4 (the powered table: README, "The quick
# preset"), quick GLUE and detection 0 only (smoke tests, "not ranked"); paper presets 0 1 2.
# Finished runs are skipped, so rerunning resumes where a previous call stopped.
set -euo pipefail
cd "$(dirname "$0")"

preset=quick
seeds=""
db_args=()
data_args=()
only_estimators=""
sweep_args=()
backbone_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --preset) preset=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --db) db_args=(--db "$2"); shift 2 ;;
        --data-root) data_args=(--data-root "$2"); shift 2 ;;
        --estimators) only_estimators=$2; shift 2 ;;
        --backbone-checkpoint) backbone_args=(--set "backbone_checkpoint=$2"); shift 2 ;;
        --jobs|--workers) sweep_args+=(--jobs "$2"); shift 2 ;;  # --workers: the former name
        --executor|--slurm|--isolation) sweep_args+=("$1" "$2"); shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "run_all.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$preset" in
    quick|paper) ;;
    *) echo "run_all.sh: --preset is quick or paper; for the other presets run bench sweep --preset $preset" \
            "with their data sets and models (bench list presets)" >&2; exit 2 ;;
esac

scripts/setup_env.sh nlp detection
. .venv/bin/activate

estimators=${only_estimators:-$(python -c "import estimators; print(' '.join(estimators.available()))")}
tasks=$(python -c "from bench.plugins import TASKS, load_task_plugins; load_task_plugins(); print(' '.join(TASKS.names()))")

failed=0
started=$(date +%s)
for task in $tasks; do
    task_seeds=$seeds
    if [ -z "$task_seeds" ]; then
        case "$preset/$task" in
            quick/classification) task_seeds="0 1 2 3 4" ;;
            quick/*) task_seeds="0" ;;
            *) task_seeds="0 1 2" ;;
        esac
    fi
    if [ "$preset/$task" = quick/classification ]; then
        # gradient diagnostics on clipped_ste's seed-0 states (README, "Gradient diagnostics"): it trains
        # that run with its states kept, which the sweep below then finds finished
        binary=$(python -c "import sys; from bench.diagnostics.run import binary_estimators; print(' '.join(n for n in sys.argv[1:] if n in binary_estimators()))" $estimators)
        [ -n "$binary" ] && echo "== classification ($preset): gradient diagnostics of $binary" && \
        bench diagnose --task classification --estimator $binary --preset quick --seed "${task_seeds%% *}" \
            --set units=32 --set samples=32 --set probe_batches=4 --set probe_size=32 \
            "${db_args[@]}" "${data_args[@]}" || failed=$((failed + 1))
    fi
    # the paper track's tables: the data sets and models its recipes cover (README, "Presets")
    case "$preset/$task" in
        quick/*) cells=("") ;;
        */classification) cells=("--dataset cifar10 --model resnet20_cifar resnet18_cifar vgg_small"
                                 "--dataset imagenet --model resnet18_imagenet") ;;
        */detection) cells=("--dataset voc --model faster_rcnn_r18_c4 ${backbone_args[*]}") ;;
        */glue) cells=("--dataset all") ;;
        *) cells=("") ;;
    esac
    for cell in "${cells[@]}"; do
        echo "== $task ($preset${cell:+, $cell}): $estimators x seeds $task_seeds"
        # bench sweep skips finished configs; one run's crash or hang never stops the others
        # shellcheck disable=SC2086 # $cell holds several arguments
        bench sweep --task "$task" $cell --estimator $estimators --seeds $task_seeds --preset "$preset" \
            "${db_args[@]}" "${data_args[@]}" "${sweep_args[@]}" || failed=$((failed + 1))
    done
done

bench report --format all --out reports "${db_args[@]}"
echo
echo "run_all.sh: $(( $(date +%s) - started )) s; $failed task famil(ies) with runs that did not finish (see: bench runs)"
echo "report: $(pwd)/reports/results.md and $(pwd)/reports/results.tex (figures in reports/figures/)"
