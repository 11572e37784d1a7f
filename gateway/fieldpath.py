"""Field paths into a JSON document (``status.door``, ``zones[2].state``), parsed once.

Shared by the config model, which refuses a malformed path with its key, and the MQTT driver,
which walks the compiled steps for every message.
"""

from __future__ import annotations

import re

__all__ = ["PathStep", "compile_path"]

PathStep = str | int

_PATH_TOKEN = re.compile(r"(?P<key>[^.\[\]]+)|\[(?P<index>-?\d+)\]|(?P<dot>\.)")


def compile_path(path: str) -> tuple[PathStep, ...]:
    """Split a field path such as ``a.b[0].c`` into ``("a", "b", 0, "c")``.

    Raises:
        ValueError: The path is not ``key``, ``[index]`` steps joined by dots.
    """
    steps: list[PathStep] = []
    pos = 0
    expect_key = False  # right after a dot
    while pos < len(path):
        match = _PATH_TOKEN.match(path, pos)
        if match is None:
            raise ValueError(f"bad field path {path!r} at char {pos}: expected a name or "
                             f"[index]")
        if match.group("dot") is not None:
            if not steps or expect_key:
                raise ValueError(f"bad field path {path!r}: empty name at char {pos}")
            expect_key = True
        elif match.group("key") is not None:
            if steps and not expect_key:
                raise ValueError(f"bad field path {path!r}: missing '.' at char {pos}")
            steps.append(match.group("key"))
            expect_key = False
        else:
            if expect_key:
                raise ValueError(f"bad field path {path!r}: name expected after '.' at char "
                                 f"{pos}")
            steps.append(int(match.group("index")))
        pos = match.end()
    if not steps or expect_key:
        raise ValueError(f"bad field path {path!r}: it is empty or ends with '.'")
    return tuple(steps)
