"""Which routes a message's topic matches, remembered per topic.

Matching a topic means trying every route's pattern in turn: a site with 1,000 devices pays
1,000 pattern matches for every message. A site's devices publish on a fixed set of topics,
so :class:`RouteTable` remembers, per topic, the routes it matched and the placeholder values
each captured; the next message on that topic costs one dict lookup. Only the topic is
remembered: ``select`` and ``split_by`` read the payload, which differs per message.

The routes of a table never change: a driver compiles them once and a config reload that
changes them builds a new driver (and with it new tables), so no entry can outlive its routes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from drivers.mqtt._topics import TopicPattern

__all__ = ["CACHED_TOPICS", "MAX_CACHED_TOPIC", "RouteTable"]

#: Topics remembered per table: more than a large site's devices have topics. Topics come
#: from the network (a ``#`` filter takes anything), so the table never grows past this.
CACHED_TOPICS = 4096
#: Longer topics are matched every time, never remembered: the bound on entries is then also
#: a bound on memory (4,096 topics of at most 256 characters, plus what they captured).
MAX_CACHED_TOPIC = 256


class _Routed(Protocol):
    @property
    def pattern(self) -> TopicPattern: ...


RouteT = TypeVar("RouteT", bound=_Routed)

#: What a topic matched: each route with the placeholder values its pattern captured. The
#: values are shared by every message on the topic: read them, never change them.
Matches = tuple[tuple[RouteT, Mapping[str, str]], ...]


class RouteTable(Generic[RouteT]):
    """Fixed routes, and what each recently seen topic matched among them.

    Args:
        routes: The routes, in the order their readings are emitted.
        size: Topics remembered at most. When full, the topic remembered first is forgotten
            (a hit costs no bookkeeping; a site with more topics than ``size`` in steady
            rotation gets misses, each as costly as matching without the table).
    """

    __slots__ = ("_cache", "_size", "routes")

    def __init__(self, routes: Sequence[RouteT], *, size: int = CACHED_TOPICS) -> None:
        if size <= 0:
            raise ValueError(f"size must be > 0, got {size}")
        self.routes: tuple[RouteT, ...] = tuple(routes)
        self._size = size
        self._cache: dict[str, Matches[RouteT]] = {}

    def __len__(self) -> int:
        return len(self.routes)

    def match(self, topic: str) -> Matches[RouteT]:
        """The routes ``topic`` matches, in route order, with their captured values."""
        found = self._cache.get(topic)
        if found is not None:
            return found
        found = tuple((route, values) for route in self.routes
                      if (values := route.pattern.match(topic)) is not None)
        if len(topic) <= MAX_CACHED_TOPIC:
            cache = self._cache
            if len(cache) >= self._size:
                del cache[next(iter(cache))]  # the oldest entry (dicts keep insertion order)
            cache[topic] = found
        return found

    @property
    def cached(self) -> int:
        """Topics now remembered."""
        return len(self._cache)
