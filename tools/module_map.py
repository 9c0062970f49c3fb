"""The README's module map, generated from the modules' own docstrings (the one place each job is said).

Each module's row is the first sentence of its docstring. ``python tools/module_map.py`` rewrites the
table between the markers in README.md; ``--check`` exits 1 when the README is out of date.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "deblurkit"
README = ROOT / "README.md"
START, END = "<!-- module-map:start -->", "<!-- module-map:end -->"
SKIPPED = {"_version.py", "__main__.py"}


def first_sentence(text: str) -> str:
    """The docstring's first sentence, on one line (reST markup as the README's Markdown)."""
    paragraph = " ".join(text.strip().split("\n\n")[0].split())
    sentence = re.split(r"(?<=[.!?])(?<!\bal\.)\s", paragraph, maxsplit=1)[0]  # not after "et al."
    sentence = re.sub(r":(?:func|class|mod|attr|data|meth):`~?([^`]+)`", r"`\1`", sentence)
    return sentence.replace("``", "`").replace("|", "\\|")


def module_rows() -> list[tuple[str, str]]:
    """(dotted module name, its one job) for every module of the package, packages first."""
    rows = []
    for path in sorted(PACKAGE.rglob("*.py"), key=lambda p: (p.parent.relative_to(PACKAGE).parts, p.name)):
        if path.name in SKIPPED:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if path.name == "__init__.py" else parts)
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        if not doc:
            raise SystemExit(f"{path.relative_to(ROOT)} has no docstring to say what it does")
        rows.append((name, first_sentence(doc)))
    return rows


def render() -> str:
    """The module map as a Markdown table."""
    lines = ["| module | its one job |", "| --- | --- |"]
    lines += [f"| `{name}` | {job} |" for name, job in module_rows()]
    return "\n".join(lines)


def updated_readme(text: str) -> str:
    """``text`` (README.md) with the table between the markers replaced by :func:`render`."""
    head, start, rest = text.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise SystemExit(f"README.md lacks the {START} … {END} markers")
    return f"{head}{START}\n{render()}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    new = updated_readme(text)
    if args.check:
        if new != text:
            print("README.md's module map is out of date: run python tools/module_map.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
