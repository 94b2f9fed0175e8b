"""From video files to the features LLP models read (see scripts/extract_features.py)."""
