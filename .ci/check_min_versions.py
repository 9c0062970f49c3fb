"""Check that .ci/min-versions.txt pins exactly the lower bounds that pyproject.toml declares.

Every ``name>=X`` of the dependencies and the test extras must appear as ``name==X`` (torch aside: the
stage runs on the local torch pair). Exits 1 with one line per difference.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
EXEMPT = {"torch"}


def declared_bounds() -> dict[str, Version]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    bounds: dict[str, Version] = {}
    for line in project["dependencies"] + project["optional-dependencies"]["test"]:
        requirement = Requirement(line)
        lower = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        if not lower:
            raise SystemExit(f"pyproject.toml: {line!r} has no lower bound")
        bounds[canonicalize_name(requirement.name)] = lower[0]
    return bounds


def pinned_versions() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / ".ci" / "min-versions.txt").read_text(encoding="utf-8").splitlines():
        line = re.sub(r"#.*", "", line).strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


def main() -> int:
    bounds, pins = declared_bounds(), pinned_versions()
    problems = [
        f"{name}: pyproject.toml says >={bound}, .ci/min-versions.txt pins {pins.get(name, 'nothing')}"
        for name, bound in sorted(bounds.items())
        if name not in EXEMPT and pins.get(name) != bound
    ]
    problems += [f"{name}: pinned but not declared" for name in sorted(set(pins) - set(bounds))]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
