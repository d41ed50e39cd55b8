"""A griffe extension: the project's ``Example:`` docstring sections are read as Google-style ``Examples:``.

The docstrings follow the Google style with a singular ``Example:`` heading; griffe only knows the plural as the
section whose ``>>>`` lines are code, and would otherwise render them as Markdown prose.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename every ``Example:`` section heading to ``Examples:`` when an object is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _HEADING.sub(r"\1Examples:", obj.docstring.value)
