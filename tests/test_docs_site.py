"""The documentation site's sources: every public name has an API entry with a runnable example, the CLI reference
covers every option of the parser, the README stays short and its links resolve. ``make docs`` (run by ``make test``
before pytest) builds the site with ``--strict``; tests/test_browser.py opens it in a browser."""

from __future__ import annotations

import doctest
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

import tractable

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API_ENTRY = re.compile(r"^::: (tractable(?:\.\w+)*)\s*$", re.MULTILINE)


def _api_entries() -> dict[str, str]:
    """Public name -> the dotted path its API page documents it under."""
    entries: dict[str, str] = {}
    for page in sorted((DOCS / "api").glob("*.md")):
        for path in API_ENTRY.findall(page.read_text(encoding="utf-8")):
            name = path.rsplit(".", 1)[1]
            assert name not in entries, f"{name} has two API entries: {entries[name]} and {path} ({page.name})"
            entries[name] = path
    return entries


def test_every_public_name_has_one_api_entry() -> None:
    entries = _api_entries()
    assert set(entries) == set(tractable.__all__), (
        f"without an API entry: {sorted(set(tractable.__all__) - set(entries))}; "
        f"not public: {sorted(set(entries) - set(tractable.__all__))}")


@pytest.fixture(scope="module")
def docstrings() -> dict[str, str]:
    import griffe

    package = griffe.load("tractable", search_paths=[str(ROOT / "src")], resolve_aliases=True,
                          resolve_external=False)
    found = {}
    for name, path in _api_entries().items():
        obj = package[path.removeprefix("tractable.")]
        found[name] = obj.docstring.value if obj.docstring is not None else ""
    return found


def test_every_api_entry_resolves_to_the_public_object_and_has_an_example(docstrings: dict[str, str]) -> None:
    entries = _api_entries()
    for name, path in entries.items():
        module, _, attribute = path.rpartition(".")
        assert getattr(importlib.import_module(module), attribute) is getattr(tractable, name), path
    without = sorted(name for name, text in docstrings.items() if not re.search(r"^Examples?:", text, re.MULTILINE))
    assert without == [], f"docstrings without an 'Example:' section: {without}"


def _is_code(name: str) -> bool:
    return inspect.isclass(getattr(tractable, name)) or inspect.isfunction(getattr(tractable, name))


@pytest.mark.parametrize("name", [name for name in sorted(tractable.__all__) if _is_code(name)])
def test_the_example_of_every_public_name_runs(name: str) -> None:
    """The ``>>>`` lines of each public class's and function's docstring run and print what they say."""
    obj = getattr(tractable, name)
    module = inspect.getmodule(obj)  # as doctest.testmod runs them: in the namespace of their module
    tests = doctest.DocTestFinder(recurse=False).find(obj, name, globs=dict(vars(module)) if module else {})
    examples = sum(len(t.examples) for t in tests)
    assert examples > 0, f"{name}: its docstring has no >>> example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{name}: {runner.failures} of {examples} example lines failed (output above)"


def test_the_examples_of_public_data_run(docstrings: dict[str, str]) -> None:
    """Names that are values (``DATASETS``, ``TARGETS``, ``__version__``) document themselves in the source."""
    for name in sorted(tractable.__all__):
        if _is_code(name):
            continue
        test = doctest.DocTestParser().get_doctest(docstrings[name], {}, name, None, 0)
        assert test.examples, f"{name}: no >>> example"
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test)
        assert runner.failures == 0, name


def _hooks():
    spec = importlib.util.spec_from_file_location("tractable_docs_hooks", DOCS / "hooks" / "tractable_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_lists_every_command_and_option_of_the_parser() -> None:
    from tractable import cli

    hooks = _hooks()
    page = hooks.cli_reference()
    commands = hooks._subcommands(cli._parser())
    assert set(commands) == {"fit", "list", "sample", "eval", "plot"}
    for name, command in commands.items():
        assert f"## tractable {name}" in page
        for action in command._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in page, f"tractable {name} {option} is missing from the CLI reference"
    assert "`model.layers`" in page and "`output.plots = false`" in page  # the config keys the options set
    assert hooks.CLI_MARKER in (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")


def test_the_tutorials_nav_lists_the_notebooks_that_exist(tmp_path: Path) -> None:
    hooks = _hooks()
    (tmp_path / "tutorials").mkdir()
    (tmp_path / "tutorials" / "02_planar_ring.ipynb").write_text(
        '{"cells": [{"cell_type": "markdown", "source": ["# Planar flows on the ring\\n"]}]}', encoding="utf-8")
    (tmp_path / "tutorials" / "01_change_of_variables.ipynb").write_text('{"cells": []}', encoding="utf-8")
    config = {"docs_dir": str(tmp_path), "nav": [{"Home": "index.md"}, {"Tutorials": ["tutorials/index.md"]}]}
    assert hooks.on_config(config)["nav"][1] == {"Tutorials": [
        "tutorials/index.md", {"1. Change of variables": "tutorials/01_change_of_variables.ipynb"},
        {"2. Planar flows on the ring": "tutorials/02_planar_ring.ipynb"}]}
    index = hooks.on_page_markdown(f"# Tutorials\n{hooks.TUTORIALS_MARKER}\n", None, config, None)
    assert index == ("# Tutorials\n- [1. Change of variables](01_change_of_variables.ipynb)\n"
                     "- [2. Planar flows on the ring](02_planar_ring.ipynb)\n")
    assert hooks.TUTORIALS_MARKER in (DOCS / "tutorials" / "index.md").read_text(encoding="utf-8")


def test_every_page_with_math_loads_the_sites_own_mathjax_relative_to_it(tmp_path: Path) -> None:
    from types import SimpleNamespace

    hooks = _hooks()
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert f"custom_mathjax_url: {hooks.MATHJAX_PLACEHOLDER}" in config and "pymdownx.arithmatex" in config
    local = f"assets/mathjax/MathJax.js?config={hooks.MATHJAX_CONFIG}"
    notebook = f'<body><script src="{hooks.MATHJAX_PLACEHOLDER}"> </script><p>$x$</p></body>'
    out = hooks.on_post_page(notebook, SimpleNamespace(url="tutorials/02_planar_ring/"), {})
    assert f'src="../../{local}"' in out and hooks.MATHJAX_PLACEHOLDER not in out
    markdown = '<body><p><span class="arithmatex">\\(x\\)</span> costs $5</p></body>'
    out = hooks.on_post_page(markdown, SimpleNamespace(url=""), {})
    assert out.index('processClass: "arithmatex"') < out.index(f'<script src="{local}">') < out.index("</body>")
    plain = "<body><p>no math, $5</p></body>"
    assert hooks.on_post_page(plain, SimpleNamespace(url="guide/images/"), {}) == plain

    size = hooks.copy_mathjax(tmp_path)  # what the pages load: MathJax, its configurations, the fonts' woff files
    mathjax = tmp_path / hooks.MATHJAX_DIR
    for name in ("MathJax.js", "config/TeX-AMS-MML_HTMLorMML-full.js", "config/Safe.js", "config/local/tractable.js",
                 "extensions/Safe.js", "jax/output/HTML-CSS/fonts/STIX-Web/fontdata.js",
                 "fonts/HTML-CSS/STIX-Web/woff/STIXMathJax_Main-Regular.woff"):
        assert (mathjax / name).is_file(), f"the site's MathJax lacks {name}"
    assert 'webFont: "STIX-Web"' in (mathjax / "config/local/tractable.js").read_text(encoding="utf-8")
    assert not list(mathjax.rglob("*.png")) and not (mathjax / "jax/output/SVG").exists()
    assert size == sum(f.stat().st_size for f in mathjax.rglob("*") if f.is_file()) < 4_000_000

def test_the_readme_fits_a_newcomer_and_links_the_site() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    for needed in ("make demo", "make test", "make docs", "```python", "tractable fit"):
        assert needed in text, f"the README lacks {needed!r}"
    for target in re.findall(r"\]\((?!https?://|#)([^)#\s]+)", text):
        assert (ROOT / target).exists(), f"README links to a missing file: {target}"


def test_user_facing_text_keeps_to_the_product() -> None:
    """The README and the site speak to users: no internal planning documents or issue numbers."""
    pages = [ROOT / "README.md", *DOCS.rglob("*.md")]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for pattern in (r"DESIGN\.md", r"\.\./shared", r"\bissues? #?\d+", r"\bphase \d"):
            assert not re.search(pattern, text, re.IGNORECASE), f"{page.relative_to(ROOT)} mentions {pattern}"
