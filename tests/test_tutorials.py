"""The tutorials (tutorials/NN_name.py, jupytext percent scripts) run to the end at the smoke budget, and the executed
notebooks in docs/tutorials/ are those scripts at their full budget: same cells, outputs present, no errors."""

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("jupytext")
pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "tutorials"
MAX_BYTES = 1_500_000


def _runner():
    spec = importlib.util.spec_from_file_location("tutorials_execute", ROOT / "tutorials" / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _runner()
SOURCES = runner.sources()


def _cells(nb) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def _text(nb) -> str:
    """Every stream and plain-text output of the notebook, joined."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_six_tutorials():
    assert [s.stem[:2] for s in SOURCES] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.stem)
def test_runs_at_smoke_budget(source, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path, _ = runner.execute(source, tmp_path, smoke=True, timeout=300)
    nb = nbformat.read(path, as_version=4)
    assert "smoke budget" in _text(nb)
    outputs = [out for cell in nb.cells for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.output_type == "error"]
    assert any("image/png" in out.get("data", {}) for out in outputs), "every tutorial shows figures"


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.stem)
def test_committed_notebook_matches_source(source):
    path = DOCS / f"{source.stem}.ipynb"
    assert path.is_file(), f"{path} is missing: run `make tutorials`"
    nb = nbformat.read(path, as_version=4)
    assert _cells(nb) == _cells(runner.read(source)), f"{path.name} differs from {source.name}: run `make tutorials`"
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert outputs and not [out for out in outputs if out.output_type == "error"]
    text = _text(nb)
    assert "full budget" in text and "smoke budget" not in text, f"{path.name} was not executed at the full budget"
    assert path.stat().st_size < MAX_BYTES


def test_ring_tutorial_reaches_the_acceptance_kl():
    text = _text(nbformat.read(DOCS / "02_planar_ring.ipynb", as_version=4))
    kl = float(re.search(r"KL\(q‖p\) = ([0-9.]+) nats \(a close fit", text).group(1))
    assert kl <= 0.05
