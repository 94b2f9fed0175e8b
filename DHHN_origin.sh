#!/bin/sh
# DHHN without label refinement (PROTOCOL.md §7-§9): train (three selected HCMN checkpoints), then
# test the dual-stream model. Real LLP: LLP_ROOT=path/to/llp sh DHHN_origin.sh (see README). Extra
# flags are passed to both steps, e.g. sh DHHN_origin.sh --device cpu --epochs 3
set -e
# LLP_ROOT is taken relative to where the script was started, everything else to the repository
[ -z "${LLP_ROOT:-}" ] || LLP_ROOT=$(cd "$LLP_ROOT" && pwd)
cd "$(dirname "$0")"
. scripts/llp_paths.sh
python main_DHHN.py --mode train --llp_root "$LLP_ROOT" --model_save_dir models/ --checkpoint DHHN --unused_flags note "$@"
python main_DHHN.py --mode test --llp_root "$LLP_ROOT" --model_save_dir models/ --checkpoint DHHN --unused_flags note "$@"
