#!/bin/sh
# DHHN with modality-aware label refinement (PROTOCOL.md §10): retrain DHHN on refined labels,
# then test the dual-stream model. Which flags it retrains on:
#   default          the published flags (data/need_to_change_MA.pkl under LLP_ROOT, fetched by
#                    scripts/download_llp.py): what the paper's "DHHN with label refinement" ran.
#                    Where they do not exist (the synthetic LLP has none) it says so and runs
#                    ESTIMATOR=ma.
#   ESTIMATOR=ma     the MA chain from scratch: train MA, estimate flags with it, retrain DHHN
#   ESTIMATOR=dhhn   estimate the flags with a first DHHN (its best-overall HCMN) instead
#   REFINED_LABELS=path/to/flags.pkl   retrain on any flags file
# Where the run goes: SAVE_DIR (default models/refinement) and NAME (default DHHN): checkpoints
# <NAME>_ma_* or <NAME>_stage1_* (estimator), <NAME>_refined_* (DHHN retrained), flags
# <estimator checkpoint>_refined_labels.{pkl,csv}; every step reads what the step before it wrote
# in the same run. Other extra flags go to every step (e.g. --eval_audio_version 2020).
set -e
[ -z "${LLP_ROOT:-}" ] || LLP_ROOT=$(cd "$LLP_ROOT" && pwd)
[ -z "${REFINED_LABELS:-}" ] || REFINED_LABELS=$(cd "$(dirname "$REFINED_LABELS")" && pwd)/$(basename "$REFINED_LABELS")
[ -z "${SAVE_DIR:-}" ] || SAVE_DIR=$(mkdir -p "$SAVE_DIR" && cd "$SAVE_DIR" && pwd)
for flag in "$@"; do
  case "$flag" in
    --model_save_dir*|--checkpoint*|--refine_out*|--refined_labels*|--model|--model=*)
      echo "error: $flag: this script names its own files and models; set SAVE_DIR=..., NAME=..., ESTIMATOR=... or REFINED_LABELS=... instead" >&2
      exit 2 ;;
  esac
done
cd "$(dirname "$0")"
. scripts/llp_paths.sh
SAVE_DIR=${SAVE_DIR:-models/refinement}
NAME=${NAME:-DHHN}
PUBLISHED_FLAGS="$LLP_ROOT/data/need_to_change_MA.pkl"
if [ -z "${REFINED_LABELS:-}" ] && [ -z "${ESTIMATOR:-}" ]; then
  if [ -f "$PUBLISHED_FLAGS" ]; then
    REFINED_LABELS="$PUBLISHED_FLAGS"
    echo "retraining on the published flags $REFINED_LABELS (the paper's DHHN with label refinement)"
  else
    echo "no published flags at $PUBLISHED_FLAGS (the synthetic LLP has none; for real LLP: python scripts/download_llp.py);" \
         "estimating them with the MA chain (ESTIMATOR=ma)"
    ESTIMATOR=ma
  fi
fi
if [ -z "${REFINED_LABELS:-}" ]; then
  case "$ESTIMATOR" in
    ma) ESTIMATOR_RUN="${NAME}_ma" ;;
    dhhn) ESTIMATOR_RUN="${NAME}_stage1" ;;
    *) echo "error: ESTIMATOR=$ESTIMATOR: choose ma or dhhn" >&2; exit 2 ;;
  esac
  REFINED_LABELS="$SAVE_DIR/${ESTIMATOR_RUN}_refined_labels.pkl"
  python main_DHHN.py --model "$ESTIMATOR" --mode train --llp_root "$LLP_ROOT" --model_save_dir "$SAVE_DIR" \
    --checkpoint "$ESTIMATOR_RUN" --unused_flags note "$@"
  python main_DHHN.py --model "$ESTIMATOR" --mode estimate_labels --llp_root "$LLP_ROOT" --model_save_dir "$SAVE_DIR" \
    --checkpoint "$ESTIMATOR_RUN" --refine_out "${REFINED_LABELS%.pkl}" --unused_flags note "$@"
fi
python main_DHHN.py --mode retrain --refined_labels "$REFINED_LABELS" --llp_root "$LLP_ROOT" --model_save_dir "$SAVE_DIR" --checkpoint "${NAME}_refined" --unused_flags note "$@"
python main_DHHN.py --mode test --llp_root "$LLP_ROOT" --model_save_dir "$SAVE_DIR" --checkpoint "${NAME}_refined" --unused_flags note "$@"
