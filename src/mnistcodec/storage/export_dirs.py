"""Target directories of exports (``export --onnx``, ``export --web``): one rule for both."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mnistcodec.errors import InputError
from mnistcodec.storage.atomic import check_link_output


def check_export_directory(
    out_dir: str | os.PathLike, force: bool, export_format: str, what: str = "export"
) -> Path:
    """An export's target directory, checked before any work: new, or with ``force`` a link
    (replaced, never followed), an empty directory or an earlier export of ``export_format``
    (its ``manifest.json`` says so), so that ``--force`` never deletes other files."""
    path = Path(out_dir)
    if check_link_output(path, force):
        return path
    if path.exists() and not path.is_dir():
        raise InputError(f"output {path} exists and is not a directory; give a directory name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output directory {parent} does not exist")
    if not path.exists():
        return path
    if not force:
        raise InputError(f"output {path} already exists; pass --force to replace the {what}")
    if any(path.iterdir()) and not _holds_export(path, export_format):
        raise InputError(
            f"output {path} is a directory that holds no mnistcodec {what}; "
            f"--force replaces only an earlier {what} (or an empty directory)"
        )
    return path


def _holds_export(path: Path, export_format: str) -> bool:
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == export_format
