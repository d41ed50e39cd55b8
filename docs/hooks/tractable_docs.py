"""MkDocs hooks of the documentation site: the pages that are generated from the code at build time.

- The CLI reference (``reference/cli.md``) is rendered from ``tractable.cli``'s argument parser, so it cannot drift
  from the command: the page holds a marker that :func:`on_page_markdown` replaces.
- The tutorials section of the navigation, and the list on the tutorials' index page, name the executed notebooks
  that exist in ``docs/tutorials/``, in the order of their number, so a strict build never points at a missing one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))  # the checkout's code, not whatever tractable is installed

CLI_MARKER = "<!-- cli-reference -->"
TUTORIALS_MARKER = "<!-- tutorials -->"
TUTORIALS = "Tutorials"


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
