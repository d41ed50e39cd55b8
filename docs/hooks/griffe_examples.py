"""A griffe extension: the project's docstrings as mkdocstrings should read them.

- The Google-style ``Example:`` heading (singular, the project's convention) is read as ``Examples:``, the section
  whose ``>>>`` lines griffe renders as code; otherwise they would be rendered as Markdown prose.
- Sphinx roles such as ``:class:`~tractable.flow.Flow``` or ``:data:`OPTIONS``` become code spans (``Flow``,
  ``OPTIONS``); Markdown has no roles, and the page would otherwise show the role's name.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|obj|exc|const):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    target = match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"


class ProjectDocstrings(griffe.Extension):
    """Rewrite each docstring when its object is loaded (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_role, _HEADING.sub(r"\1Examples:", obj.docstring.value))
