"""MkDocs hooks of the documentation site: the pages that are generated from the code at build time.

- The CLI reference (``reference/cli.md``) is rendered from ``tractable.cli``'s argument parser, so it cannot drift
  from the command: the page holds a marker that :func:`on_page_markdown` replaces.
- The tutorials section of the navigation, and the list on the tutorials' index page, name the executed notebooks
  that exist in ``docs/tutorials/``, in the order of their number, so a strict build never points at a missing one.
- MathJax ships with the site (:func:`copy_mathjax`), so the formulas are typeset offline, from ``file://`` and under
  any sub-path: every page that has math (the notebooks' ``custom_mathjax_url`` placeholder, or arithmatex output in
  a Markdown page) loads it by a path relative to the page (:func:`on_post_page`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.utils import get_relative_url

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))  # the checkout's code, not whatever tractable is installed

CLI_MARKER = "<!-- cli-reference -->"
TUTORIALS_MARKER = "<!-- tutorials -->"
TUTORIALS = "Tutorials"

#: mkdocs.yml's ``custom_mathjax_url`` for the notebooks; :func:`on_post_page` puts the local MathJax in its place.
MATHJAX_PLACEHOLDER = "tractable-local-mathjax"
#: Where the copy of MathJax lies in the built site.
MATHJAX_DIR = "assets/mathjax"
#: The combined TeX configuration of the jupyter-server-mathjax copy (it has no CommonHTML output: HTML-CSS with the
#: STIX-Web fonts, as Jupyter itself uses it), Jupyter's Safe mode, and the site's own settings (MATHJAX_LOCAL).
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe,local/tractable"
#: The files MathJax loads to typeset TeX, at once or on demand (menus, zoom, TeX packages, glyph ranges): 2.7 MB of
#: the wheel's 12 MB. Left out: the SVG output, the speech-rule engine of the accessibility explorer (3.6 MB), the
#: translations of the menus; the wheel has no image fonts.
MATHJAX_FILES = ("LICENSE", "MathJax.js", "config/TeX-AMS-MML_HTMLorMML-full.js", "config/Safe.js", "extensions/*.js",
                 "extensions/TeX/*.js", "extensions/HTML-CSS/*.js", "extensions/MathML/*.js",
                 "extensions/a11y/accessibility-menu.js", "jax/element/**/*.js", "jax/input/TeX/*.js",
                 "jax/output/HTML-CSS/**/*.js", "fonts/HTML-CSS/STIX-Web/woff/*.woff", "localization/en/*.js")
#: config/local/tractable.js: the web fonts that are shipped and no image fonts (Jupyter's settings), so that nothing
#: is fetched that is not there. The blank font of the web-font check is a local() one: MathJax's url('about:blank')
#: is a failed load in Chromium's console; the hidden MathML for screen readers keeps the page's font: the MathML
#: output's styles would fetch TeX fonts (fonts/HTML-CSS/TeX/otf) that the wheel does not have.
MATHJAX_LOCAL = """MathJax.Hub.Config({
  "HTML-CSS": {
    availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null, linebreaks: {automatic: true},
    styles: {
      "@font-face": {"font-family": "MathJax_Blank", src: "local('MathJax_Blank')"},
      ".MJX_Assistive_MathML [mathvariant]": {"font-family": "inherit"}
    }
  },
  messageStyle: "none"
});
MathJax.Ajax.loadComplete("[MathJax]/config/local/tractable.js");
"""
#: Markdown pages: only what pymdownx.arithmatex (generic) marked is TeX, so a $ elsewhere stays a dollar.
ARITHMATEX_MATHJAX = r"""<script type="text/x-mathjax-config">
MathJax.Hub.Config({tex2jax: {inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true,
                              processEnvironments: true, ignoreClass: ".*|", processClass: "arithmatex"}});
</script>
<script src="{url}"></script>
"""


def _cell(text: str) -> str:
    """Text for a Markdown table cell: pipes escaped, no line breaks."""
    return " ".join(text.split()).replace("|", r"\|")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options_table(parser: argparse.ArgumentParser, keys: dict[str, str]) -> list[str]:
    """One table per argument group: the option, its values, the configuration key it sets, what it does."""
    formatter = parser._get_formatter()
    lines: list[str] = []
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        title = {"positional arguments": "arguments", "options": "options"}.get(group.title, group.title)
        lines += [f"**{title}**", "", "| argument | values | config key | description |", "|---|---|---|---|"]
        for action in actions:
            name = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
            if action.choices is not None:
                values = " \\| ".join(f"`{c}`" for c in action.choices)
            elif action.nargs == 0:
                values = "switch"
            else:
                values = f"`{action.metavar or action.dest.upper()}`"
            key = keys.get(action.dest, "")
            help_text = formatter._expand_help(action) if action.help else ""
            lines.append(f"| {name} | {values} | {f'`{key}`' if key else ''} | {_cell(help_text)} |")
        lines.append("")
    return lines


def cli_reference() -> str:
    """The Markdown of the CLI reference: usage and options of ``tractable`` and of each of its commands."""
    from tractable import cli

    keys = dict(cli.OPTIONS)
    keys.update({dest: f"{key} = {str(value).lower()}" for dest, (key, value) in cli.SWITCHES.items()})
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "110"  # argparse wraps the usage lines to the terminal's width
    try:
        parser = cli._parser()
        lines = ["```text", parser.format_usage().strip(), "```", "", parser.description or "", ""]
        for name, command in _subcommands(parser).items():
            lines += [f"## tractable {name}", "", _cell(command.description or ""), "", "```text",
                      command.format_usage().strip(), "```", "", *_options_table(command, keys)]
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(lines)


def _notebook_title(path: Path) -> str:
    """The first Markdown heading of a notebook, else its file name."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        cells = []
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            source = "".join(cell.get("source", []))
            match = re.search(r"^#+\s+(.+)$", source, re.MULTILINE)
            if match:
                return match.group(1).strip()
    return path.stem.split("_", 1)[-1].replace("_", " ").capitalize()


def tutorials_nav(docs_dir: Path) -> list[dict[str, str]]:
    """Nav entries for docs/tutorials/NN_name.ipynb, in order."""
    notebooks = sorted((docs_dir / "tutorials").glob("[0-9][0-9]_*.ipynb"))
    return [{f"{int(p.name[:2])}. {_notebook_title(p)}": f"tutorials/{p.name}"} for p in notebooks]


def on_config(config):
    entries = tutorials_nav(Path(config["docs_dir"]))
    for i, item in enumerate(config["nav"] or []):
        if isinstance(item, dict) and TUTORIALS in item:
            config["nav"][i] = {TUTORIALS: [*[e for e in item[TUTORIALS] if isinstance(e, str)], *entries]}
    return config


def on_page_markdown(markdown, page, config, files):
    if CLI_MARKER in markdown:
        return markdown.replace(CLI_MARKER, cli_reference())
    if TUTORIALS_MARKER in markdown:  # the tutorials' index links the executed notebooks that exist
        links = [f"- [{title}]({path.removeprefix('tutorials/')})"
                 for entry in tutorials_nav(Path(config["docs_dir"])) for title, path in entry.items()]
        return markdown.replace(TUTORIALS_MARKER, "\n".join(links))
    return markdown


def mathjax_url(page_url: str) -> str:
    """The URL of the site's MathJax, with its configuration, relative to the page at ``page_url``."""
    return f"{get_relative_url(f'{MATHJAX_DIR}/MathJax.js', page_url)}?config={MATHJAX_CONFIG}"


def on_post_page(output, page, config):
    url = mathjax_url(page.url)
    if MATHJAX_PLACEHOLDER in output:  # a notebook: its template's MathJax script and configuration
        return output.replace(MATHJAX_PLACEHOLDER, url)
    if 'class="arithmatex"' in output:
        head, tail = output.rsplit("</body>", 1)
        return head + ARITHMATEX_MATHJAX.replace("{url}", url) + "</body>" + tail
    return output


def copy_mathjax(site_dir: Path) -> int:
    """Copy MATHJAX_FILES of the jupyter-server-mathjax wheel, and the site's configuration, into the built site.

    Returns:
        The number of bytes copied.
    """
    spec = importlib.util.find_spec("jupyter_server_mathjax")  # not imported: that would import jupyter_server
    if spec is None or not spec.submodule_search_locations:
        raise PluginError("the site ships MathJax from the jupyter-server-mathjax package: "
                          "pip install -e '.[docs]' installs it")
    source = Path(next(iter(spec.submodule_search_locations))) / "static"
    target = site_dir / MATHJAX_DIR
    size = 0
    for pattern in MATHJAX_FILES:
        paths = [p for p in sorted(source.glob(pattern)) if p.is_file()]
        if not paths:
            raise PluginError(f"jupyter-server-mathjax has no {pattern} in {source}")
        for path in paths:
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
            size += path.stat().st_size
    local = target / "config" / "local" / "tractable.js"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(MATHJAX_LOCAL, encoding="utf-8")
    return size + len(MATHJAX_LOCAL)


def on_post_build(config):
    copy_mathjax(Path(config["site_dir"]))
