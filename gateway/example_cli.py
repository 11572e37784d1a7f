"""``propgw example``: the config files shipped with propgw, wherever it was installed from.

A wheel puts the example sites, device profiles and detector packs inside the package
(``gateway/_bundled_config``), a checkout keeps them in ``config/``: an engineer should not have
to know which, nor dig through ``site-packages``, to start a site file from the example::

    propgw example                      # what is shipped, and where
    propgw example site > site.yaml     # the annotated example site, to edit
    propgw example elevator             # the elevator detector pack, to read its rules
    propgw example --path               # the folder, for `profile_dirs` or a file browser
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

__all__ = ["add_example_parser", "bundled_config_dir", "run_example_command"]

EXIT_OK = 0
EXIT_USAGE = 2

#: Sub-folders of the bundled config, with what they hold, in the order they are listed.
_KINDS = (("examples", "example sites"), ("profiles", "device profiles"),
          ("detectors", "detector packs"))


def add_example_parser(sub: Any) -> None:
    """Register ``propgw example`` on the top-level sub-parser set."""
    example = sub.add_parser(
        "example", help="print a shipped example site, device profile or detector pack",
        description="Print one of the config files shipped with propgw to standard output "
                    "(e.g. `propgw example site > site.yaml`), or list them all.")
    example.add_argument("name", nargs="?", metavar="NAME",
                         help="file to print: site, two-elevators, a profile such as "
                              "elevator-modbus, or a pack such as elevator (default: list)")
    example.add_argument("--path", action="store_true",
                         help="print the folder the shipped config files are in")


def run_example_command(args: argparse.Namespace, out: TextIO | None = None,
                        err: TextIO | None = None) -> int:
    """Run ``propgw example``; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    root = bundled_config_dir()
    if root is None:
        print("propgw example: this installation has no bundled config files", file=err)
        return EXIT_USAGE
    if args.path:
        print(root if args.name is None else _find(root, args.name) or root, file=out)
        return EXIT_OK
    if args.name is None:
        _list(root, out)
        return EXIT_OK
    found = _find(root, args.name)
    if found is None:
        names = [p.stem for kind, _ in _KINDS for p in _files(root / kind)]
        print(f"propgw example: no shipped file {args.name!r}; choose one of: "
              f"{', '.join(names)}", file=err)
        return EXIT_USAGE
    out.write(found.read_text(encoding="utf-8"))
    return EXIT_OK


def bundled_config_dir() -> Path | None:
    """The folder with ``examples/``, ``profiles/`` and ``detectors/``: in the installed
    package, or ``config/`` of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_bundled_config", here.parent / "config"):
        if (candidate / "profiles").is_dir():
            return candidate
    return None


# --------------------------------------------------------------------------- helpers


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def _find(root: Path, name: str) -> Path | None:
    """By stem (``site``), or qualified by folder (``profiles/elevator-modbus``)."""
    stem = name.removesuffix(".yaml")
    kind, _, rest = stem.rpartition("/")
    for folder, _ in _KINDS:
        if kind in ("", folder):
            match = [p for p in _files(root / folder) if p.stem == rest]
            if match:
                return match[0]
    return None


def _list(root: Path, out: TextIO) -> None:
    print(f"shipped config files, in {root}:", file=out)
    for folder, title in _KINDS:
        files = _files(root / folder)
        print(f"  {title} ({folder}/): {', '.join(p.stem for p in files) or 'none'}", file=out)
    print("print one with `propgw example NAME` (e.g. `propgw example site > site.yaml`)",
          file=out)
