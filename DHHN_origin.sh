#!/bin/sh
# DHHN without label refinement (SPEC §7-§9): train (three selected HCMN checkpoints), then test
# the dual-stream model. Real LLP: LLP_ROOT=. sh DHHN_origin.sh (see README). Extra flags are
# passed to both steps, e.g. sh DHHN_origin.sh --device cpu --epochs 3
set -e
. scripts/llp_paths.sh
SAVE="--model_save_dir models/ --checkpoint DHHN"
python main_DHHN.py --mode train $DATA_FLAGS $SAVE "$@"
python main_DHHN.py --mode test $DATA_FLAGS $SAVE "$@"
