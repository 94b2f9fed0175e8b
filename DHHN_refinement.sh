#!/bin/sh
# DHHN with modality-aware label refinement (PROTOCOL.md §10): train a first model, estimate which
# labels are wrong by modality swapping, retrain with refined targets, test the dual-stream model.
# REFINED_LABELS=path/to/flags.pkl skips the first two steps (e.g. the published need_to_change.pkl).
# Where the run goes: SAVE_DIR (default models/refinement) and NAME (default DHHN): checkpoints
# <NAME>_stage1_* and <NAME>_refined_*, flags <NAME>_stage1_refined_labels.{pkl,csv}; every step
# reads what the step before it wrote in the same run. Other extra flags go to every step.
set -e
[ -z "${LLP_ROOT:-}" ] || LLP_ROOT=$(cd "$LLP_ROOT" && pwd)
[ -z "${REFINED_LABELS:-}" ] || REFINED_LABELS=$(cd "$(dirname "$REFINED_LABELS")" && pwd)/$(basename "$REFINED_LABELS")
[ -z "${SAVE_DIR:-}" ] || SAVE_DIR=$(mkdir -p "$SAVE_DIR" && cd "$SAVE_DIR" && pwd)
for flag in "$@"; do
  case "$flag" in
    --model_save_dir*|--checkpoint*|--refine_out*|--refined_labels*)
      echo "error: $flag: this script names its own files; set SAVE_DIR=..., NAME=... or REFINED_LABELS=... instead" >&2
      exit 2 ;;
  esac
done
cd "$(dirname "$0")"
. scripts/llp_paths.sh
SAVE_DIR=${SAVE_DIR:-models/refinement}
NAME=${NAME:-DHHN}
if [ -z "${REFINED_LABELS:-}" ]; then
  REFINED_LABELS="$SAVE_DIR/${NAME}_stage1_refined_labels.pkl"
  python main_DHHN.py --mode train --llp_root "$LLP_ROOT" --model_save_dir "$SAVE_DIR" --checkpoint "${NAME}_stage1" "$@"
  python main_DHHN.py --mode estimate_labels --llp_root "$LLP_ROOT" --model_save_dir "$SAVE_DIR" --checkpoint "${NAME}_stage1" \
    --refine_out "${REFINED_LABELS%.pkl}" "$@"
fi
python main_DHHN.py --mode retrain --refined_labels "$REFINED_LABELS" --llp_root "$LLP_ROOT" --model_save_dir "$SAVE_DIR" --checkpoint "${NAME}_refined" "$@"
python main_DHHN.py --mode test --llp_root "$LLP_ROOT" --model_save_dir "$SAVE_DIR" --checkpoint "${NAME}_refined" "$@"
