#!/usr/bin/env bash
# One prepared run on a GPU machine (the workplace's `device` tool; nothing there can be
# downloaded, so the non-torch dependencies travel as cp312 wheels in .whl/ (`bash
# bench/tbg_device.sh wheels`), the pilot dataset in data/dipeptides-pilot and the run to profile
# in .gpu/ft-kl-3600 (its checkpoint.pt and config.yaml, in a git-ignored folder)):
#   run(command="bash bench/gpu_check.sh", carry=[".whl", ".gpu", "data/dipeptides-pilot"])
#   1. the CUDA tests (every model kind trains, samples, evaluates and refines on the GPU; the
#      torch force field on the GPU matches the CPU);
#   2. the shipped tbg-ic model samples 10,000 of dipeptide:NY with --device cuda (timed);
#   3. one tbg-ic training step profiled on the GPU, without and with the energy term;
#   4. with FT_MINUTES > 0, tbg-ic fine-tuned with the energy term on the GPU for that long
#      (the fine-tuned run comes back in $OUT; table it on a CPU afterwards with
#      python bench/finetune_tbg_ic.py --from runs/ft-kl-3600 --out DIR --eval-only).
# Logs come back in $OUT. Results: docs/benchmarks.md, "GPU".
set -u
OUT=${OUT:-out-gpu}; mkdir -p "$OUT"
FT_MINUTES=${FT_MINUTES:-0}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
{ nvidia-smi -L; python3 -c "import torch, openmm, mdtraj, numpy; print('torch', torch.__version__, 'openmm', openmm.__version__, 'mdtraj', mdtraj.__version__, 'numpy', numpy.__version__, torch.cuda.get_device_name())"; } 2>&1 | tee "$OUT/info.log"

echo "== 1. CUDA tests"
timeout 200 python3 -m pytest -q -p no:cacheprovider -k cuda \
  tests/models/test_contract.py tests/energies/test_forcefield.py 2>&1 | tail -25 | tee "$OUT/cuda-tests.log"

echo "== 2. zero-shot sampling on the GPU"
for device in cuda; do
  start=$(date +%s%N)
  timeout 90 python3 -m boltzflow sample --model tbg-ic --system dipeptide:NY -n 10000 \
    --device $device --run /tmp/pretrained --no-progress 2>&1 | tail -6
  echo "$device: $(( ($(date +%s%N) - start) / 1000000 )) ms (start-up and install included)"
done 2>&1 | tee "$OUT/sample.log"

echo "== 3. one tbg-ic training step, profiled"
for kl in 0 1; do
  timeout 150 python3 bench/profile_step.py --run .gpu/ft-kl-3600 --device cuda --w-kl $kl \
    --kl-peptides 8 --kl-samples 32 --steps 3 2>&1 | grep -v USDT | tee "$OUT/profile-kl$kl.log"
done

[ "$FT_MINUTES" -gt 0 ] || exit 0
echo "== 4. fine-tune tbg-ic with the energy term on the GPU ($FT_MINUTES min)"
timeout $(( FT_MINUTES * 60 + 60 )) python3 bench/finetune_tbg_ic.py --from .gpu/ft-kl-3600 \
  --out /tmp/ft-gpu --minutes "$FT_MINUTES" --device cuda --no-eval --w-kl 1 \
  --kl-peptides 8 --kl-samples 32 --checkpoint-every 100 2>&1 | tr '\r' '\n' \
  | grep -v "it/s\]$" | tail -20 | tee "$OUT/finetune.log"
cp /tmp/ft-gpu/checkpoint.pt /tmp/ft-gpu/config.yaml /tmp/ft-gpu/train_log.csv "$OUT"/
