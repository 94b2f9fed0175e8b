#!/bin/sh
# DHHN with modality-aware label refinement (PROTOCOL.md §10): train a first model, estimate which
# labels are wrong by modality swapping, retrain with refined targets, test the dual-stream model.
# REFINED_LABELS=path/to/flags.pkl skips the first two steps (e.g. the published need_to_change.pkl).
# Checkpoints go to models/refinement/ and never collide with DHHN_origin.sh.
set -e
[ -z "${LLP_ROOT:-}" ] || LLP_ROOT=$(cd "$LLP_ROOT" && pwd)
[ -z "${REFINED_LABELS:-}" ] || REFINED_LABELS=$(cd "$(dirname "$REFINED_LABELS")" && pwd)/$(basename "$REFINED_LABELS")
cd "$(dirname "$0")"
. scripts/llp_paths.sh
SAVE_DIR=models/refinement
if [ -z "${REFINED_LABELS:-}" ]; then
  python main_DHHN.py --mode train --llp_root "$LLP_ROOT" --model_save_dir $SAVE_DIR --checkpoint DHHN_stage1 "$@"
  python main_DHHN.py --mode estimate_labels --llp_root "$LLP_ROOT" --model_save_dir $SAVE_DIR --checkpoint DHHN_stage1 "$@"
  REFINED_LABELS=$SAVE_DIR/DHHN_stage1_refined_labels.pkl
fi
python main_DHHN.py --mode retrain --refined_labels "$REFINED_LABELS" --llp_root "$LLP_ROOT" --model_save_dir $SAVE_DIR --checkpoint DHHN_refined "$@"
python main_DHHN.py --mode test --llp_root "$LLP_ROOT" --model_save_dir $SAVE_DIR --checkpoint DHHN_refined "$@"
