"""Every install form serves the pages and the client, from any directory.

Each case copies the source (no build outputs), installs it into a fresh venv
(``--system-site-packages`` for tornado; the build backend comes from the
package index), starts ``wshub --port=0`` in an unrelated directory, with
decoy ``server``/``hub``/``handlers`` modules first on PYTHONPATH, and fetches
``/``, ``/whiteboard`` and ``/static/hub.js``. Slow (~1 minute): select with
``-m install``, skip with ``-m "not install"``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from handlers.fanout import batch_writer
from tests.command import Command
from tests.support import REPO

pytestmark = pytest.mark.install

BUILD_OUTPUTS = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", "*.so", "tests", "bench",
    ".hypothesis", ".pytest_cache", ".ruff_cache", "reports", ".venv", "venv",
)  # fmt: skip
PAGES = {"/": "index.html", "/whiteboard": "whiteboard.html", "/static/hub.js": "hub.js"}
DECOY = "raise ImportError('a decoy shadowed wshub: {name}')\n"


def _run(*argv: str | Path, cwd: Path) -> None:
    result = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"


def _install(form: str, tmp: Path) -> Path:
    """A fresh venv holding the project installed as ``form``; returns its bin dir."""
    source = tmp / "source"
    shutil.copytree(REPO, source, ignore=BUILD_OUTPUTS)
    _run(sys.executable, "-m", "venv", "--system-site-packages", tmp / "venv", cwd=tmp)
    bin_dir = tmp / "venv" / "bin"
    pip = [bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps"]
    if form == "wheel":
        _run(bin_dir / "python", "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist",
             source, cwd=tmp)  # fmt: skip
        (wheel,) = (tmp / "dist").glob("*.whl")
        _run(*pip, wheel, cwd=tmp)
    elif form == "directory":
        _run(*pip, source, cwd=tmp)
    else:  # editable, in this throwaway venv only
        _run(*pip, "-e", source, cwd=tmp)
    return bin_dir


def _decoys(tmp: Path) -> Path:
    """A PYTHONPATH directory whose server, hub and handlers fail on import."""
    decoys = tmp / "decoys"
    for package in ("hub", "handlers"):
        (decoys / package).mkdir(parents=True)
        (decoys / package / "__init__.py").write_text(DECOY.format(name=package))
    (decoys / "server.py").write_text(DECOY.format(name="server"))
    return decoys


def _installed_top_level(bin_dir: Path) -> list[str]:
    """Top-level names the installed distribution put into the venv (asked from the
    venv's own directory: in the repository, its *.egg-info would answer instead)."""
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps(sorted({str(f).split('/')[0] for f in m.files('tornado-wshub')})))"
    )
    out = subprocess.run(
        [bin_dir / "python", "-c", code], capture_output=True, text=True, cwd=bin_dir.parent
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("form", ["wheel", "directory", "editable"])
def test_installed_wshub_serves_pages_from_any_directory(form: str, tmp_path: Path) -> None:
    bin_dir = _install(form, tmp_path)
    top_level = _installed_top_level(bin_dir)
    assert not {"server.py", "hub", "handlers", "static"} & set(top_level), top_level
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(_decoys(tmp_path))}
    with Command([bin_dir / "wshub", "--port=0", "--logging=info"], cwd=elsewhere, env=env) as proc:
        for path, name in PAGES.items():
            url = f"http://127.0.0.1:{proc.port}{path}"
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200
                assert response.read() == (Path(REPO) / "static" / name).read_bytes()
        if batch_writer.send_many is not None:  # this machine builds the C helper
            assert "without the GIL" in proc.log(), proc.log()
    assert "Traceback" not in proc.log() and "decoy" not in proc.log()
