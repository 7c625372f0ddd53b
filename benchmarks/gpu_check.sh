#!/usr/bin/env bash
# Issue 18's GPU figures in one prepared run, most wanted first: each step's output goes to
# $OUT as it comes, and each step has its own time limit, so a session's device time running
# out keeps what finished. Runs from the repository root, with the installed torch (the GPU
# machine has one; gradinv is taken from src/).
#   OUT=/path bash benchmarks/gpu_check.sh                  # on a CUDA machine
#   DEVICE=cpu QUICK=1 LIMIT=120 bash benchmarks/gpu_check.sh  # a dry run of the script here
set -u
OUT=${OUT:-runs/gpu-check}
DEVICE=${DEVICE:-cuda}
LIMIT=${LIMIT:-240}  # seconds per step
QUICK=${QUICK:-}
PYTHON=${PYTHON:-python}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"

step() {  # step NAME COMMAND...: run it under LIMIT, its output to $OUT/NAME.txt
    local name=$1
    shift
    echo "== $name ($(date +%T)): $*" | tee -a "$OUT/steps.txt"
    timeout "$LIMIT" "$@" > "$OUT/$name.txt" 2>&1
    echo "   exit $? after $SECONDS s in all" | tee -a "$OUT/steps.txt"
}

step machine "$PYTHON" -c "import torch; print(torch.__version__, torch.cuda.is_available() \
and torch.cuda.get_device_name())"
speed=(benchmarks/speed.py --device "$DEVICE" --short 5 --long 25 --repeats 2)
if [ -n "$QUICK" ]; then
    speed+=(--quick --repeats 1 --short 1 --long 3 --agree-iterations 5 --seeds 2)
fi
step speed-gi "$PYTHON" "${speed[@]}" --sections gi
step speed-gias-audit "$PYTHON" "${speed[@]}" --sections gias,audit
step speed-giml "$PYTHON" "${speed[@]}" --sections giml
if [ -n "$QUICK" ]; then
    step demo "$PYTHON" -m gradinv.cli demo --model lenet --iterations 20 --device "$DEVICE" --quiet \
        --out "$OUT/demo"
    step quality "$PYTHON" benchmarks/quality.py --quick --attacks gi --seeds 0 --budget 10 \
        --device "$DEVICE" --out "$OUT/quality"
else
    step demo "$PYTHON" -m gradinv.cli demo --model resnet18 --iterations 2000 --device cuda --quiet \
        --out "$OUT/demo"
    # GPU vs CPU PSNR (target: within 0.5 dB over 3 seeds); the CPU side runs where time allows
    step quality "$PYTHON" benchmarks/quality.py --quick --attacks gi,gias --seeds 0 1 2 \
        --device cuda --out "$OUT/quality"
fi
step speed-agreement "$PYTHON" "${speed[@]}" --sections agreement
