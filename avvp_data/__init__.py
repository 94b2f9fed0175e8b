"""The AVVP data code behind dataloader.py: LLP's description (llp.py: classes, segments, file names
and layout), its annotation files (annotations.py), feature files (feature_files.py) and their packed
cache (feature_cache.py), the label-refinement flags files (refinement_flags.py), a split on the
training device (tensor_split.py) and the synthetic LLP generator (synthetic_llp.py)."""
