#!/usr/bin/env bash
# Install mmcv 2.1.0 with its compiled ops into the active virtual environment (mmdet 3.3.0 needs them).
#
# PyPI has mmcv 2.1.0 only as a source archive, and its setup.py asks for -std=c++14/-std=c++17 while the
# headers of torch 2.14 need C++20. This script downloads the source, switches the standard to c++20, builds
# a wheel against the installed torch (about 6 minutes on 2 cores) and keeps it in a cache folder, so that
# later installs on the same machine take seconds. A GPU machine with nvcc gets a CUDA build (FORCE_CUDA=1),
# cached separately.
#   Cache folder: $BENCH_CACHE/wheels (default ~/.cache/surge-bench/wheels).
set -euo pipefail
MMCV_VERSION=2.1.0
python -c "import torch" 2>/dev/null || { echo "install_mmcv.sh: install torch first (scripts/setup_env.sh)" >&2; exit 1; }

if python -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
    exit 0
fi

torch_tag=$(python -c "import torch; print(torch.__version__.split('+')[0])")
# A CUDA build needs nvcc and a visible GPU (or MMCV_CUDA=1, e.g. on a cluster's login node).
if command -v nvcc >/dev/null 2>&1 && { [ "${MMCV_CUDA:-0}" = 1 ] || python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; }; then
    flavour="cu$(python -c 'import torch; print(torch.version.cuda.replace(".", ""))')"
    export FORCE_CUDA=1
else
    flavour=cpu
fi
cache="${BENCH_CACHE:-$HOME/.cache/surge-bench}/wheels/mmcv-$MMCV_VERSION-torch$torch_tag-$flavour"
wheel=$(ls "$cache"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)

if [ -z "$wheel" ]; then
    echo "install_mmcv.sh: building mmcv $MMCV_VERSION ($flavour, torch $torch_tag); this takes several minutes once" >&2
    # mmcv's setup.py imports pkg_resources, which setuptools 80 removed.
    pip install --quiet --disable-pip-version-check "setuptools<80" wheel ninja
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    pip download --quiet --disable-pip-version-check --no-deps --no-build-isolation --no-binary :all: -d "$work" "mmcv==$MMCV_VERSION"
    tar -xzf "$work"/mmcv-"$MMCV_VERSION".tar.gz -C "$work"
    src="$work/mmcv-$MMCV_VERSION"
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$src/setup.py"
    grep -q -- '-std=c++20' "$src/setup.py" || { echo "install_mmcv.sh: could not switch mmcv's C++ standard" >&2; exit 1; }
    mkdir -p "$cache"
    # Keep -O3: with setuptools<80 CFLAGS replaces Python's default flags, and an unoptimised build
    # runs nms and RoIAlign about 3.5x slower.
    (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" CFLAGS="-DNDEBUG -fwrapv -O3 -g0" \
        pip wheel --quiet --disable-pip-version-check --no-build-isolation --no-deps -w "$cache" .)
    wheel=$(ls "$cache"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)
fi
pip install --quiet --disable-pip-version-check "$wheel"
python -c "import mmcv.ops" || { echo "install_mmcv.sh: mmcv.ops does not import; delete $cache and rebuild" >&2; exit 1; }
