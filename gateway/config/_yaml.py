"""Read YAML that may be hostile: every size limit is enforced while the file is composed.

A config file, a profile or a detector pack is text someone else may have written. PyYAML on
its own builds an alias bomb (``a: &a [x, x]``, ``b: &b [*a, *a]`` ...) as shared objects in
no time, but every later walk over them (line index, ``${ENV}`` substitution, validation)
grows exponentially; it recurses until :class:`RecursionError` on deep nesting or a
self-referencing alias, and builds integers too long to print. So the composer below counts as
it goes and stops at the first limit passed, naming the limit, the key path and the line:

=====================  ==========  =====================================================
limit                  value       a real site file is well below it
=====================  ==========  =====================================================
file size              1 MiB       1,000 household meters and 30 elevators: 240 KiB
values (nodes)         100,000     counted after alias expansion; that site: 25,000
nesting depth          64          the deepest shipped config, profile or pack: 8
text value length      10,000      the longest real value is a description line
integer length         64 chars    the largest real integer is a 64-bit register value
=====================  ==========  =====================================================

An alias that refers to a node it is part of (``a: &a [*a]``, or a ``<<:`` merge of an
enclosing mapping) is refused: it would describe an infinite document.

libyaml (the C parser PyYAML's wheels ship) turns the text into events when it is available;
the counting composer always runs in Python, so the limits do not depend on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError
from yaml.resolver import Resolver

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_INT_CHARS",
    "MAX_NODES",
    "MAX_SCALAR_CHARS",
    "YamlProblem",
    "parse_yaml",
    "read_limited",
]

#: Largest file read (config, profile or detector pack).
MAX_FILE_BYTES = 1024 * 1024
#: Most values (scalars, lists, mappings) in one document, counting every alias expansion.
MAX_NODES = 100_000
#: Deepest nesting of lists and mappings.
MAX_DEPTH = 64
#: Longest text value (or key), in characters.
MAX_SCALAR_CHARS = 10_000
#: Longest integer, in characters (Python refuses to print integers beyond 4,300 digits).
MAX_INT_CHARS = 64

_INT_TAG = "tag:yaml.org,2002:int"
_LIBYAML = bool(getattr(yaml, "__with_libyaml__", False))
_NESTING = f"nested too deeply: the nesting limit is {MAX_DEPTH} levels of lists and mappings"


class YamlProblem(Exception):
    """The text is not YAML the gateway accepts.

    Attributes:
        path: Dotted key path where it was found (``devices[2].points``), "" at the top.
        line: 1-based line, if known.
        column: 1-based column, if known.
        message: What is wrong and what is expected, naming the limit when one was hit.
        found: What was found, short (``5000 characters``, ``*a``).
    """

    def __init__(self, path: str, line: int | None, column: int | None, message: str,
                 found: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.column = column
        self.message = message
        self.found = found


def read_limited(path: Path) -> str:
    """The UTF-8 text of ``path``, refusing files larger than :data:`MAX_FILE_BYTES`.

    Reads at most one byte more than the limit from a regular file, so a huge file cannot
    exhaust memory; anything else (a FIFO, ``/dev/zero``) is refused before it is opened.

    Raises:
        YamlProblem: The file is larger than the limit.
        OSError: It cannot be opened or read.
        UnicodeDecodeError: It is not UTF-8.
    """
    # A FIFO or device node would block in open() or never end: only regular files (or
    # links to one) are config files. /dev/stdin and the like are refused the same way.
    if path.exists() and not path.is_file():
        raise OSError(f"{path} is not a regular file")
    with path.open("rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise _too_large(f"more than {MAX_FILE_BYTES} bytes")
    return data.decode("utf-8")


def parse_yaml(text: str) -> tuple[Any, Node | None]:
    """Parse one YAML document within the limits; return the data and its node tree.

    The node tree (for line numbers) may share nodes where the file uses aliases.

    Raises:
        YamlProblem: A limit was passed, an alias is recursive, or the text is not valid YAML
            (then ``message`` starts with ``YAML syntax:``, or ``YAML value:`` for a value
            that does not fit its tag, such as ``!!int abc`` or ``2023-02-30``).
    """
    size = len(text) if len(text) > MAX_FILE_BYTES else len(text.encode("utf-8", "replace"))
    if size > MAX_FILE_BYTES:
        raise _too_large(f"more than {MAX_FILE_BYTES} bytes")
    try:
        loader = _Loader(text)
    except UnicodeEncodeError as exc:  # only from load_config_text with a lone surrogate
        raise YamlProblem("", None, None, f"text is not valid Unicode: {exc.reason}") from None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise _syntax_problem(exc, text) from None
    finally:
        loader.dispose()
    return data, node


def _syntax_problem(exc: yaml.YAMLError, text: str) -> YamlProblem:
    mark = getattr(exc, "problem_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
    problem = getattr(exc, "problem", None)
    if problem == "exceeded maximum nesting depth":  # libyaml's own cap (1000) came first
        return YamlProblem("", line, column, _NESTING, "more than 1000 levels")
    if isinstance(exc, ReaderError):  # no mark, and its str() spans two lines
        char = exc.character
        shown = f"#x{char:04x}" if isinstance(char, int) else repr(char)
        # libyaml counts UTF-8 bytes, PyYAML's reader characters.
        before = text.encode("utf-8", "replace")[:exc.position].decode("utf-8", "replace") \
            if _LIBYAML else text[:exc.position]
        line = before.count("\n") + 1
        column = len(before) - before.rfind("\n")
        return YamlProblem("", line, column, f"YAML syntax: character {shown}: {exc.reason}")
    reason = problem or str(exc).splitlines()[0]
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        reason = f"{context} (line {context_mark.line + 1}): {reason}"
    elif context:
        reason = f"{context}: {reason}"
    kind = "YAML value" if isinstance(exc, ConstructorError) else "YAML syntax"
    return YamlProblem("", line, column, f"{kind}: {reason}")


def _too_large(found: str) -> YamlProblem:
    return YamlProblem("", None, None, f"file too large: the file size limit is "
                                       f"{MAX_FILE_BYTES} bytes (1 MiB)", found)


class _LimitedComposer(Composer):
    """PyYAML's composer, counting nodes (aliases expanded), depth and scalar sizes."""

    if TYPE_CHECKING:  # provided by the parser it is mixed with (CParser or Parser)
        def check_event(self, *choices: Any) -> bool: ...
        def peek_event(self) -> Any: ...

    def __init__(self) -> None:
        super().__init__()
        self._nodes = 0
        self._depth = 0
        # Expanded size of each finished anchored node; an anchor missing here while it is in
        # self.anchors is still being composed, so an alias to it is recursive.
        self._anchor_sizes: dict[str, int] = {}
        self._path: list[str] = []

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        segment = _segment(parent, index)
        self._path.append(segment)
        try:
            if self.check_event(AliasEvent):
                event = self.peek_event()
                if event.anchor in self.anchors:
                    size = self._anchor_sizes.get(event.anchor)
                    if size is None:
                        raise self._problem(
                            event, f"recursive alias: *{event.anchor} is used inside the "
                                   f"node &{event.anchor} it refers to, which would make the "
                                   f"document infinite; an alias may only repeat a node "
                                   f"defined before it", found=f"*{event.anchor}")
                    self._count(size, event, alias=event.anchor)
                return super().compose_node(parent, index)
            event = self.peek_event()
            before = self._nodes
            self._count(1, event)
            if isinstance(event, ScalarEvent) and len(event.value) > MAX_SCALAR_CHARS:
                raise self._problem(event, f"value too long: the value length limit is "
                                           f"{MAX_SCALAR_CHARS} characters",
                                    found=f"{len(event.value)} characters")
            collection = isinstance(event, CollectionStartEvent)
            if collection:
                self._depth += 1
                if self._depth > MAX_DEPTH:
                    raise self._problem(event, _NESTING, found=f"more than {MAX_DEPTH} levels")
            node = super().compose_node(parent, index)
            if collection:
                self._depth -= 1
            if isinstance(node, ScalarNode) and node.tag == _INT_TAG \
                    and len(node.value) > MAX_INT_CHARS:
                raise self._problem(event, f"integer too long: the integer length limit is "
                                           f"{MAX_INT_CHARS} characters",
                                    found=f"{len(node.value)} characters")
            if event.anchor is not None:
                self._anchor_sizes[event.anchor] = self._nodes - before
            return node
        finally:
            self._path.pop()

    def _count(self, nodes: int, event: Any, alias: str | None = None) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            how = f" (alias *{alias} adds {nodes})" if alias is not None else ""
            raise self._problem(event, f"too many values: the limit is {MAX_NODES} values "
                                       f"(scalars, lists, mappings) with every alias expanded"
                                       f"{how}; an alias bomb?",
                                found=f"more than {MAX_NODES}")

    def _problem(self, event: Any, message: str, found: str) -> YamlProblem:
        mark = event.start_mark
        path = "".join(self._path).removeprefix(".")
        if len(path) > 120:  # 64 levels deep: keep the top and the innermost keys
            path = f"{path[:40]}...{path[-77:]}"
        return YamlProblem(path, mark.line + 1, mark.column + 1, message, found)


class _Constructor(SafeConstructor):
    def construct_object(self, node: Node, deep: bool = False) -> Any:
        # An explicit tag on text that does not fit it (`!!int abc`, `!!bool maybe`,
        # `!!timestamp 2023-02-30`, `!!int ""`) makes PyYAML's own constructors raise ValueError,
        # KeyError, IndexError or AttributeError instead of a YAML error.
        try:
            return super().construct_object(node, deep)
        except (ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
            shown = repr(_short(node.value)) if isinstance(node, ScalarNode) else \
                "a list" if isinstance(node, SequenceNode) else "a mapping"
            why = f" ({str(exc)[:60]})" if isinstance(exc, ValueError) else ""
            raise ConstructorError(None, None, f"{shown} is not a valid "
                                               f"!!{node.tag.rsplit(':', 1)[-1]}{why}",
                                   node.start_mark) from None


def _segment(parent: Node | None, index: Any) -> str:
    if isinstance(parent, SequenceNode):
        return f"[{index}]"
    if isinstance(parent, MappingNode):
        if isinstance(index, ScalarNode):
            return f".{_short(index.value)}"
        return ".<key>" if index is None else ".<complex key>"
    return ""


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


if _LIBYAML:
    from yaml._yaml import CParser

    class _Loader(_LimitedComposer, CParser, _Constructor, Resolver):
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            _LimitedComposer.__init__(self)
            _Constructor.__init__(self)
            Resolver.__init__(self)

else:  # pragma: no cover  # PyYAML built without libyaml: same limits, slower parsing
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Loader(_LimitedComposer, Reader, Scanner, Parser,  # type: ignore[no-redef]
                  _Constructor, Resolver):
        def __init__(self, text: str) -> None:
            Reader.__init__(self, text)
            Scanner.__init__(self)
            Parser.__init__(self)
            _LimitedComposer.__init__(self)
            _Constructor.__init__(self)
            Resolver.__init__(self)
