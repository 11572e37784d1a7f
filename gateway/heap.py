"""Keep the garbage collector's full passes short: what the gateway builds at start is frozen.

CPython's cyclic garbage collector makes a full pass over every object it tracks whenever the
objects promoted to its oldest generation since the last full pass exceed a quarter of those
it kept then, and nothing else runs during a pass. Under telemetry load the messages and
readings in flight at each young collection are promoted, so full passes come often, and each
one walks the whole heap: on the bench at 15,000 messages a second, one every 2.5 s over
about 66,000 objects, 21-33 ms each, during which a fire alarm that has arrived waits. Most of
those objects (modules, the config, compiled rules, the stages) are built at start and live
as long as the process. :func:`freeze` moves them out of the collector's sight, and a full
pass then walks only what came later (0.4-0.7 ms each on the same bench). Frozen objects are
still freed as usual when their last reference goes; only a reference cycle among them would
stay, which is why a config reload (which drops the old links, rules and config) calls
:func:`refreeze`.

Only the ``propgw run`` process does this (the collector's state is the whole process's):
a gateway embedded in another program (the tests) leaves its collector alone.
"""

from __future__ import annotations

import gc

__all__ = ["freeze", "refreeze"]


def freeze() -> None:
    """Move every object the collector tracks now out of its future passes: a constant-time
    step (no pass is made, and the frozen objects are not even counted: counting walks them,
    3 ms at start), so the gateway's start is not held up."""
    gc.freeze()


def refreeze() -> None:
    """Make the frozen objects collectable again, collect the garbage among them (what a config
    reload left behind), then freeze what remains: one full pass, at a reload only."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
