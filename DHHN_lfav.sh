#!/bin/sh
# DHHN (MODEL=han: HAN) on LFAV, long videos of any length (PROTOCOL.md §16): train, selecting
# checkpoints by LFAV's rule on val, then test with LFAV's metrics. Real LFAV: LFAV_ROOT=path/to/lfav
# sh DHHN_lfav.sh, the folder holding the release's LFAV_dataset/ and feats/ (see README). Unset, a
# synthetic LFAV is generated in data/synthetic_lfav on first use (SYNTHETIC_SIZE=tiny|demo|lfav,
# default demo; SYNTHETIC_MAX_LENGTH, default 120 s). Extra flags go to both steps, e.g.
# sh DHHN_lfav.sh --epochs 3 --batch_size 16
set -e
# LFAV_ROOT is taken relative to where the script was started, everything else to the repository
[ -z "${LFAV_ROOT:-}" ] || LFAV_ROOT=$(cd "$LFAV_ROOT" && pwd)
cd "$(dirname "$0")"
MODEL=${MODEL:-dhhn}
if [ -z "${LFAV_ROOT:-}" ]; then
  LFAV_ROOT=data/synthetic_lfav
  python scripts/make_synthetic_lfav.py --out "$LFAV_ROOT" --size "${SYNTHETIC_SIZE:-demo}" \
    --max_length "${SYNTHETIC_MAX_LENGTH:-120}"
fi
# batches of 16 videos, as the LFAV release trains (src/scripts/train_s3.sh); a later --batch_size wins
python main_DHHN.py --mode train --dataset lfav --lfav_root "$LFAV_ROOT" --model "$MODEL" --model_save_dir models/ \
  --checkpoint "${MODEL}_lfav" --batch_size 16 --unused_flags note "$@"
python main_DHHN.py --mode test --dataset lfav --lfav_root "$LFAV_ROOT" --model "$MODEL" --model_save_dir models/ \
  --checkpoint "${MODEL}_lfav" --unused_flags note "$@"
