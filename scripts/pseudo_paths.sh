# Sourced first by DHHN_pseudo.sh and VALOR.sh (`. "$(dirname "$0")/scripts/pseudo_paths.sh"`): makes
# LLP_ROOT and PSEUDO_ROOT absolute (they are given relative to where the script was started), moves
# to the repository, sources scripts/llp_paths.sh, then sets PSEUDO_FLAGS (the segment pseudo-labels,
# VALOR's layout under PSEUDO_ROOT, default LLP_ROOT: CLAP/segment_pseudo_labels for audio,
# CLIP/segment_pseudo_labels for visual; PROTOCOL.md §13) and FEATURE_FLAGS (FEATURES=official, the
# default: VGGish, ResNet152, R(2+1)D; FEATURES=clip_clap: CLAP/features and CLIP/features under
# LLP_ROOT with the R(2+1)D snippets). Real LLP: python scripts/download_valor_features.py first. On
# the synthetic LLP they are made from its planted truth: pseudo-labels at precision PSEUDO_PRECISION
# and recall PSEUDO_RECALL (default 0.9 and 0.8), CLIP/CLAP-shaped features when asked for.
[ -z "${LLP_ROOT:-}" ] || LLP_ROOT=$(cd "$LLP_ROOT" && pwd)
[ -z "${PSEUDO_ROOT:-}" ] || PSEUDO_ROOT=$(cd "$PSEUDO_ROOT" && pwd)
cd "$(dirname "$0")"   # $0 is the sourcing script, in the repository root
. scripts/llp_paths.sh
PSEUDO_ROOT=${PSEUDO_ROOT:-$LLP_ROOT}
FEATURES=${FEATURES:-official}
if [ -f "$LLP_ROOT/.synthetic_complete" ]; then
  if [ "$FEATURES" = clip_clap ]; then   # the same dataset (its sizes and seed), with CLIP/CLAP features added
    set -- $(python -c "import json, sys; p = json.load(open(sys.argv[1]))['params']; print(p['n_train'], p['n_val'], p['n_test'], p['seed'])" \
      "$LLP_ROOT/.synthetic_complete") "$@"
    python scripts/make_synthetic_llp.py --out "$LLP_ROOT" --n_train "$1" --n_val "$2" --n_test "$3" --seed "$4" --modern_features
    shift 4
  fi
  if [ ! -d "$PSEUDO_ROOT/CLAP/segment_pseudo_labels" ]; then
    python scripts/make_pseudo_labels.py --root "$LLP_ROOT" --out "$PSEUDO_ROOT" \
      --precision "${PSEUDO_PRECISION:-0.9}" --recall "${PSEUDO_RECALL:-0.8}"
  fi
fi
PSEUDO_FLAGS="--audio_pseudo_dir $PSEUDO_ROOT/CLAP/segment_pseudo_labels --visual_pseudo_dir $PSEUDO_ROOT/CLIP/segment_pseudo_labels"
case "$FEATURES" in
  official) FEATURE_FLAGS="" ;;
  clip_clap) FEATURE_FLAGS="--audio_dir $LLP_ROOT/CLAP/features --video_dir $LLP_ROOT/CLIP/features" ;;
  *) echo "error: FEATURES=$FEATURES: official or clip_clap" >&2; exit 2 ;;
esac
