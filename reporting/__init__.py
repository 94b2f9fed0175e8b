"""What people look at: the printed tables (tables.py), exported predictions (export.py), training
curves and sweep bar charts (plots.py), parsing pictures (visualize.py) and the timelines of parsed
videos (timeline.py), and the alternative decision rules that re-score exports (decision_rules.py)."""
