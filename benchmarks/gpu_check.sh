#!/usr/bin/env bash
# The GPU checks in one run, for a lent CUDA machine with no package index (issue 15, part 4):
#   1. the CUDA-marked tests (tests/test_cuda.py: every family on CUDA vs the CPU, autocast
#      bfloat16/float16, channels_last, torch.compile, mixed-precision training, a search);
#   2. `affinity benchmark` of the zoo against timm, fp32 and --amp, batch 8 and 256;
#   3. `affinity search --space shifts.yaml --device cuda`, one worker and four, 60 s each.
# Usage: bash benchmarks/gpu_check.sh OUTDIR [WHEELS]
#   WHEELS: a folder of wheels for what the machine's Python lacks (optuna, fvcore and theirs),
#   installed with the project into /tmp/site (no index is reached).
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

stamp "1. CUDA tests"
timeout 180 $py -m pytest -q -m cuda tests/test_cuda.py -n 4 -p no:cacheprovider -o addopts="-ra --strict-markers" \
    2>&1 | tail -40

stamp "2. affinity benchmark vs timm (cuda)"
timm_models="deit_s swin_t resmlp_s12 mixer_s16"
others="as_mlp_t repmlpnet_t224 s2mlp_deep container_light"
for amp in "" "--amp"; do
    timeout 75 affinity benchmark $timm_models --device cuda --batch-size 8 --batch-size 256 --compare-timm \
        --repeats 15 $amp --out "$out/bench" --quiet
    timeout 75 affinity benchmark $others --device cuda --batch-size 8 --batch-size 256 \
        --repeats 15 $amp --out "$out/bench" --quiet
done

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
stamp done
