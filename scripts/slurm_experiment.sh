#!/usr/bin/env bash
# Runs a ViTMerge experiment on a Slurm cluster as a job array: one array task per downstream
# task (probe, then each fine-tuning mode; independent of each other), then the merge stage
# (task addition, task count, negation, disentanglement, report) once all of them succeeded.
# With --scheme, a pre-training job runs first.
#
#   scripts/slurm_experiment.sh OUT_DIR [experiment options …]
#   e.g. scripts/slurm_experiment.sh runs/exp1 --modes probe,aligned,full,linearized
#
# The commands come from `vitmerge experiment --plan` (the same options, with --job K), so a
# job writes exactly the checkpoints a single `vitmerge experiment` would, and the final job
# reuses them. OUT_DIR, the task files and the binary must be on a filesystem every node sees.
#
# Environment:
#   VITMERGE     the vitmerge binary (default .build/release/vitmerge; build it with
#                `swift build -c release`)
#   CPUS         cores per job (default 8; each job uses them as threads)
#   SBATCH_ARGS  extra sbatch options, e.g. "--partition=cpu --time=02:00:00"
#   DRY_RUN=1    print the sbatch commands instead of submitting them
set -euo pipefail
OUT=${1:?usage: $0 OUT_DIR [vitmerge experiment options]}
shift
VITMERGE=${VITMERGE:-.build/release/vitmerge}
CPUS=${CPUS:-8}
read -r -a EXTRA <<<"${SBATCH_ARGS:-}"
[ -x "$VITMERGE" ] || { echo "error: $VITMERGE is not an executable; build it (swift build -c release) or set VITMERGE" >&2; exit 1; }
if [ "${DRY_RUN:-0}" != 1 ] && ! command -v sbatch >/dev/null; then
    echo "error: sbatch not found: run this on a Slurm login node (DRY_RUN=1 shows the commands)" >&2
    exit 1
fi

PLAN=$("$VITMERGE" experiment --out "$OUT" "$@" --plan)
JOBS=$(grep -c -E -- ' --job [0-9]+$' <<<"$PLAN" || true)
[ "$JOBS" -ge 1 ] || { echo "error: the plan has no jobs:" >&2; echo "$PLAN" >&2; exit 1; }
PRETRAIN=$(grep -E -- ' --job pretrain$' <<<"$PLAN" || true)
# Job 0's command with the array index in place of 0, and the merge command (the last line).
ARRAY=$(grep -E -- ' --job 0$' <<<"$PLAN" | sed -E 's/ --job 0$/ --job $SLURM_ARRAY_TASK_ID/')
MERGE=$(grep -v '^#' <<<"$PLAN" | tail -n 1)

submit() {  # submit NAME [sbatch options …] -- COMMAND; prints the job id
    local name=$1; shift
    local opts=()
    while [ "$1" != "--" ]; do opts+=("$1"); shift; done
    shift
    local log="$OUT/slurm-%x-%j.log"
    [ "$name" = tasks ] && log="$OUT/slurm-%x-%A_%a.log"
    local cmd=(sbatch --parsable --job-name="vitmerge-$name" --cpus-per-task="$CPUS" --output="$log"
               "${EXTRA[@]}" "${opts[@]}" --wrap "export VITMERGE_THREADS=$CPUS; $*")
    if [ "${DRY_RUN:-0}" = 1 ]; then
        printf '%q ' "${cmd[@]}" >&2; echo >&2
        echo "<$name-job-id>"
    else
        "${cmd[@]}"
    fi
}

mkdir -p "$OUT"
DEP=()
if [ -n "$PRETRAIN" ]; then
    id=$(submit pretrain -- "$PRETRAIN")
    DEP=(--dependency="afterok:$id")
    echo "pre-training: job $id"
fi
id=$(submit tasks "${DEP[@]}" --array="0-$((JOBS - 1))" -- "$ARRAY")
echo "per-task jobs: array $id (tasks 0-$((JOBS - 1)))"
id=$(submit merge --dependency="afterok:$id" -- "$MERGE")
echo "merge stage: job $id; results in $OUT/results.json and $OUT/report.md"
