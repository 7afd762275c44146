"""The playground as a static folder: the page, mnistcodec.js and a model, no server.

``mnistcodec export MODEL --web DIR`` writes:

* ``index.html``: the playground page of ``mnistcodec serve``
  (``playground/static/index.html``) with one ``<meta name="mnistcodec-backend"
  content="library">`` added to its head, which makes the page answer its own
  API calls with the in-page library instead of a server;
* ``mnistcodec.js`` (the library, docs/javascript.md) and ``backend.js`` (the
  playground's JSON API on top of it), copied from ``mnistcodec/web``;
* the model file, byte for byte as loaded (``<name>.safetensors``);
* ``manifest.json``: ``format`` (:data:`WEB_FORMAT`), the model's name, file
  and fingerprint, and the SHA-256 of every other file.

The folder works from any static file server (or ``file://`` where the browser
allows module scripts there) and makes no request outside itself. A
directory is replaced only with ``force``, and only if it is empty or holds an
earlier web export; it is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from importlib import resources
from pathlib import Path

from mnistcodec.coding.model_files import LoadedModel
from mnistcodec.errors import InputError
from mnistcodec.storage.atomic import atomic_directory
from mnistcodec.storage.export_dirs import check_export_directory

WEB_FORMAT = "mnistcodec-web-export"
#: The files of ``mnistcodec/web`` that the page loads.
LIBRARY_FILES = ("mnistcodec.js", "backend.js")
BACKEND_META = '<meta name="mnistcodec-backend" content="library">'


def check_web_dir(out_dir: str | os.PathLike, force: bool = False) -> Path:
    """A target directory, checked before any work: new, or (``force``) an earlier web export."""
    return check_export_directory(out_dir, force, WEB_FORMAT, "web export")


def page_html() -> str:
    """The playground page, set to answer its API in the page."""
    html = resources.files("mnistcodec.playground").joinpath("static/index.html").read_text()
    html, count = re.subn(r"</head>", BACKEND_META + "\n</head>", html, count=1)
    if not count:
        raise RuntimeError("the playground page has no </head>")
    return html


def library_file(name: str) -> bytes:
    """A file of the JavaScript library (``mnistcodec/web``)."""
    return resources.files("mnistcodec").joinpath("web", name).read_bytes()


def export_web(
    loaded: LoadedModel, name: str, out_dir: str | os.PathLike, force: bool = False
) -> Path:
    """Write the static playground for ``loaded`` (called ``name``) into ``out_dir``."""
    path = check_web_dir(out_dir, force=force)
    if loaded.path is None:
        raise InputError("the model has no file to copy; export a model file or a shipped model")
    model_name = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "model"
    model_file = f"{model_name}.safetensors"
    files = {
        "index.html": page_html().encode(),
        **{file: library_file(file) for file in LIBRARY_FILES},
        model_file: Path(loaded.path).read_bytes(),
    }
    manifest = {
        "format": WEB_FORMAT,
        "default": model_name,
        "models": [{"name": model_name, "file": model_file, "fingerprint": loaded.fingerprint}],
        "sha256": {file: hashlib.sha256(data).hexdigest() for file, data in sorted(files.items())},
    }
    files["manifest.json"] = (json.dumps(manifest, indent=1) + "\n").encode()
    with atomic_directory(path, replace_link=force) as put:
        for file, data in files.items():
            put(file, data)
    return path
