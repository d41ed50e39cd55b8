"""Execute the tutorials: each ``tutorials/NN_name.py`` (jupytext percent format) becomes a notebook, runs in a fresh
kernel with nbclient, and is written with its outputs to ``docs/tutorials/NN_name.ipynb``.

The tutorials read the environment variable ``SMOKE``: unset (or ``0``), they run at their full budget, the one whose
figures the documentation shows; ``SMOKE=1`` runs every cell on a tiny budget, only to check that the code runs to
the end (the test suite does that, ``tests/test_tutorials.py``). Each notebook runs in a temporary working directory,
so the run directories it writes do not litter the checkout.

Usage::

    python tutorials/execute.py                      # every tutorial, full budget, into docs/tutorials/
    python tutorials/execute.py 02 05                # those whose names start with 02 or 05
    SMOKE=1 python tutorials/execute.py --out /tmp/nb  # smoke budget, somewhere else
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOCS = ROOT / "docs" / "tutorials"


def sources() -> list[Path]:
    """The tutorial sources, in order: ``tutorials/NN_name.py``."""
    return sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))


def read(source: Path):
    """The tutorial as a notebook (no outputs), with the kernel the runner uses."""
    import jupytext

    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.pop("jupytext", None)  # the .py file is the source; the notebook carries no pairing
    return nb


def execute(source: Path, out_dir: Path, *, smoke: bool, timeout: int = 600) -> tuple[Path, float]:
    """Run one tutorial in a fresh kernel and write the executed notebook into ``out_dir``.

    The kernel inherits this process's environment with ``SMOKE`` set as asked and ``src/`` first on
    ``PYTHONPATH`` (so a checkout runs its own code, installed or not).

    Returns:
        The notebook written and the seconds the execution took.

    Raises:
        nbclient.exceptions.CellExecutionError: when a cell fails (the message holds the traceback).
    """
    import nbformat
    from nbclient import NotebookClient

    nb = read(source)
    env_before = {k: os.environ.get(k) for k in ("SMOKE", "PYTHONPATH", "MPLBACKEND", "PYTHONWARNINGS")}
    os.environ["SMOKE"] = "1" if smoke else "0"
    # `import torch` imports tqdm.auto, which warns in a kernel without ipywidgets; not the tutorials' business
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [env_before["PYTHONWARNINGS"],
                                                          "ignore:IProgress not found"]))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env_before["PYTHONPATH"]]))
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend draws the figures into the notebook
    try:
        with tempfile.TemporaryDirectory(prefix=f"tutorial-{source.stem}-") as work:
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": work}})
            start = time.perf_counter()
            client.execute()
            seconds = time.perf_counter() - start
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{source.stem}.ipynb"
    nbformat.write(nb, path)
    return path, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="prefixes of the tutorials to run (default: all)")
    parser.add_argument("--out", type=Path, default=DOCS, help=f"where the notebooks go (default {DOCS})")
    parser.add_argument("--smoke", action="store_true", help="the smoke budget (also SMOKE=1 in the environment)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds a cell may take (default 600)")
    args = parser.parse_args(argv)
    smoke = args.smoke or os.environ.get("SMOKE", "0") not in ("", "0")
    chosen = [s for s in sources() if not args.names or any(s.stem.startswith(n) for n in args.names)]
    if not chosen:
        parser.error(f"no tutorial matches {args.names}; expected prefixes of {[s.stem for s in sources()]}")
    for source in chosen:
        path, seconds = execute(source, args.out, smoke=smoke, timeout=args.timeout)
        size = path.stat().st_size / 1e6
        print(f"{source.stem}: {seconds:.1f} s ({'smoke' if smoke else 'full'} budget), {path} ({size:.2f} MB)",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
