#!/usr/bin/env bash
# The GPU checks in one run, for a lent CUDA machine with no package index (issue 15, part 4):
#   1. the CUDA-marked tests (tests/test_cuda.py: every family on CUDA vs the CPU, autocast
#      bfloat16/float16, channels_last, torch.compile, mixed-precision training, a search);
#   2. `affinity benchmark` of the zoo against timm, fp32 and --amp, batch 8 and 256;
#   3. `affinity search --space shifts.yaml --device cuda`, one worker and four, 60 s each;
#   4. benchmarks/gpu_profile.py: the top kernels of deit_s, swin_t, as_mlp_t against timm's.
# Each step writes its own log under OUTDIR (a step cut by its timeout still leaves its log).
# On an H200 (2026-11-28): install 40 s; step 1 did not end in 180 s (the compile tests take
# most of it, so they now run apart, a compile thread per worker); step 2 took 190 s, step 3
# 135 s. All four need more than one device call's 10 minutes: STEPS="1 4", then STEPS="2 3".
# Usage: [STEPS="1 2 3 4"] bash benchmarks/gpu_check.sh OUTDIR [WHEELS]
#   WHEELS: a folder of wheels for what the machine's Python lacks (optuna, fvcore and theirs),
#   installed with the project into /tmp/site (no index is reached). Made here, for the H200's
#   Python 3.12 (2026-11-28; fvcore and iopath are source-only on PyPI, so built as wheels):
#     P="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
#     pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $P -d .whl \
#         optuna==5.0.0 alembic==1.20.1 colorlog==6.12.0 Mako==1.4.3 SQLAlchemy==2.1.9 yacs==0.1.8 termcolor==3.3.0
#     pip wheel --no-deps -w .whl fvcore==0.1.5.post20221221 iopath==0.1.10
set -uo pipefail
out=${1:?usage: gpu_check.sh OUTDIR [WHEELS]}
wheels=${2:-}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=python3
if [ -n "$wheels" ]; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --no-build-isolation --upgrade --target /tmp/site "$wheels"/*.whl . || exit 1
    export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
fi
stamp() { echo "== $(date +%T) $* (load $(cut -d' ' -f1-3 /proc/loadavg))"; }

stamp versions
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
$py -c "import torch, optuna, fvcore, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0)); print('optuna', optuna.__version__, 'timm', timm.__version__)"

steps=" ${STEPS:-1 2 3 4} "
step() { [[ $steps == *" $1 "* ]]; }

if step 1; then
stamp "1. CUDA tests"
args=(-q -m cuda tests/test_cuda.py -p no:cacheprovider -rfE --tb=short -o "addopts=--strict-markers")
timeout 90 $py -m pytest "${args[@]}" -k "not compiled" -n 6 > "$out/tests.txt" 2>&1
TORCHINDUCTOR_COMPILE_THREADS=1 timeout 240 $py -m pytest "${args[@]}" -k compiled -n 14 > "$out/tests_compile.txt" 2>&1
grep -hE "passed|failed|^FAILED|^ERROR" "$out/tests.txt" "$out/tests_compile.txt"
fi

if step 2; then
stamp "2. affinity benchmark vs timm (cuda)"
timm_models="deit_s swin_t resmlp_s12 mixer_s16"
others="as_mlp_t repmlpnet_t224 s2mlp_deep container_light"
for amp in "" "--amp"; do
    timeout 75 affinity benchmark $timm_models --device cuda --batch-size 8 --batch-size 256 --compare-timm \
        --repeats 15 $amp --out "$out/bench" --quiet
    timeout 75 affinity benchmark $others --device cuda --batch-size 8 --batch-size 256 \
        --repeats 15 $amp --out "$out/bench" --quiet
done
fi

if step 3; then
stamp "3. affinity search --space shifts.yaml --device cuda"
for jobs in 1 4; do
    rm -rf /tmp/res
    t0=$(date +%s)
    timeout 100 affinity search --space shifts.yaml --device cuda --n-jobs $jobs --timeout 60 --out /tmp/res \
        --n-trials 1000 2>&1 | tail -25
    board=/tmp/res/shifts/leaderboard.csv
    echo "n_jobs=$jobs wall $(( $(date +%s) - t0 )) s, $(($(wc -l < $board) - 1)) trials"
    cp "$board" "$out/leaderboard_jobs$jobs.csv"
done
fi

if step 4; then
stamp "4. top kernels against timm (batch 256, float16 autocast)"
timeout 90 $py benchmarks/gpu_profile.py --models deit_s swin_t as_mlp_t --amp --rows 10 > "$out/profile.txt" 2>&1
grep -E "^## " "$out/profile.txt"
fi
stamp done
