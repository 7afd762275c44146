"""Strip a notebook's outputs, execution counts and run metadata, in place.

    python scripts/strip_notebook.py notebooks/lab.ipynb           # strip
    python scripts/strip_notebook.py --check notebooks/lab.ipynb   # exit 1 if not stripped

Notebooks are committed without outputs: run this before committing a
notebook that was executed in Jupyter. Needs nbformat (``pip install -e .[notebook]``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

#: The only notebook-level metadata kept: the kernel to run and its language.
KEPT_METADATA = ("kernelspec",)
#: Cell metadata that records a run (timings, collapsed or scrolled outputs).
RUN_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` without outputs, execution counts or run metadata (modified in place)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
    kept = {key: nb.metadata[key] for key in KEPT_METADATA if key in nb.metadata}
    nb.metadata = nbformat.from_dict({**kept, "language_info": {"name": "python"}})
    return nb


def is_stripped(nb: nbformat.NotebookNode) -> bool:
    """Whether stripping would change nothing."""
    before = nbformat.writes(nb)
    return nbformat.writes(strip(nbformat.reads(before, as_version=4))) == before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="only report unstripped notebooks")
    args = parser.parse_args(argv)
    unstripped = []
    for path in args.notebooks:
        try:
            nb = nbformat.read(path, as_version=4)
        except (OSError, ValueError) as exc:
            print(f"strip_notebook: cannot read {path}: {exc}", file=sys.stderr)
            return 2
        if is_stripped(nb):
            continue
        unstripped.append(path)
        if not args.check:
            nbformat.write(strip(nb), path)
            print(f"stripped {path}")
    if args.check and unstripped:
        for path in unstripped:
            print(f"{path} has outputs or run metadata; run scripts/strip_notebook.py {path}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
