#!/usr/bin/env bash
# Data-parallel scaling on this machine: the same fine-tuning (same global batch) as one
# process on 1 thread and on all cores, and as N MPI ranks (one core each), with gradient sums
# overlapped with the backward or after it. Prints img/s, the speed-up over one process on all
# cores measured in the same run, and rank 0's communication line.
#
#   scripts/mpi_scaling.sh [RANKS=2] [STEPS=100] [CONFIG=vit_mini_patch4_28|config.json]
#
# Needs the MPI build: swift build -c release --traits MPI --scratch-path .build-mpi
set -euo pipefail
cd "$(dirname "$0")/.."
RANKS=${1:-2}; STEPS=${2:-100}; CONFIG=${3:-vit_mini_patch4_28}
VITMERGE=${VITMERGE:-.build-mpi/release/vitmerge}
[ -x "$VITMERGE" ] || { echo "error: build it first: swift build -c release --traits MPI --scratch-path .build-mpi" >&2; exit 1; }
CORES=$(nproc)
ROOT=(); [ "$(id -u)" -eq 0 ] && ROOT=(--allow-run-as-root)
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
if [ "$CONFIG" = vit_mini_patch4_28 ]; then
    START=data/pretrained/vit_mini_glyphs.safetensors
else
    START=$TMP/start.safetensors
    "$VITMERGE" init --config "$CONFIG" --seed 1 --output "$START" >/dev/null
fi
ARGS=(finetune --mode full --checkpoint "$START" --task data/tasks/mnist.safetensors --output "$TMP/out.safetensors"
      --steps "$STEPS" --batch-size 64 --lr 3e-4 --json)
rate() { grep '"event":"step"' | tail -n 1 | sed -E 's/.*"images_per_second":([0-9.]+).*/\1/'; }

echo "model $CONFIG, $STEPS steps of global batch 64, $CORES cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
one1=$("$VITMERGE" "${ARGS[@]}" --threads 1 | rate)
oneN=$("$VITMERGE" "${ARGS[@]}" --threads "$CORES" | rate)
printf '%-44s %8.1f img/s\n' "1 process × 1 thread" "$one1"
printf '%-44s %8.1f img/s  (%.2f× 1 thread)\n' "1 process × $CORES threads" "$oneN" "$(echo "$oneN / $one1" | bc -l)"
for sync in overlapped after-backward; do
    out=$(mpirun "${ROOT[@]}" --oversubscribe -np "$RANKS" "$VITMERGE" "${ARGS[@]}" --grad-sync "$sync")
    r=$(rate <<<"$out")
    printf '%-44s %8.1f img/s  (%.2f× 1 process × %d threads)\n' "$RANKS ranks ($sync)" "$r" "$(echo "$r / $oneN" | bc -l)" "$CORES"
    grep '^communication' <<<"$out" | sed 's/^/    /'
done
