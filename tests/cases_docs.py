"""The transform that docs/architecture.md shows how to add, read from that page and put under the shared suite.

The page's first Python block under "## Adding a transform" is executed as it stands; if it stops passing the suite,
the page is wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

from cases import randomised

PAGE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _example() -> dict[str, object]:
    text = PAGE.read_text(encoding="utf-8")
    section = text.split("## Adding a transform", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    if code is None:
        raise ValueError(f"expected a ```python block under '## Adding a transform' in {PAGE}")
    namespace: dict[str, object] = {"__name__": "architecture_example"}
    exec(compile(code.group(1), str(PAGE), "exec"), namespace)  # noqa: S102 - the project's own documentation
    return namespace


SinhArcsinh = _example()["SinhArcsinh"]

TRANSFORMS = {"docs-sinh-arcsinh": lambda: randomised(SinhArcsinh(3), scale=0.5)}
AT_INIT = {"docs-sinh-arcsinh": lambda: SinhArcsinh(3)}
