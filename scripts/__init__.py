"""Command-line tools on top of the project, each run as `python scripts/<name>.py` (after
`pip install -e .`, which makes the project importable from anywhere); a package so that tests
import them as `from scripts import sweep`."""
