"""Commissioning: look at what the gateway reads before writing rules.

* ``propgw read -c SITE DEVICE [POINT...]``: one poll of one device (or, for MQTT, the next
  message(s) on its topics), with the raw registers or payload next to each decoded value.
* ``propgw watch -c SITE [DEVICE...]``: live values, as a table on a terminal and one line per
  change otherwise.

Both use the gateway's own drivers and decoders and start nothing else: no upstream, no alarm
engine, no state files. Only the argument parser is imported eagerly; the drivers load when a
command runs.
"""

from gateway.commission._cli import (
    EXIT_BAD,
    EXIT_NO_ANSWER,
    EXIT_OK,
    EXIT_USAGE,
    add_commission_parser,
    run_commission_command,
)

__all__ = [
    "EXIT_BAD",
    "EXIT_NO_ANSWER",
    "EXIT_OK",
    "EXIT_USAGE",
    "add_commission_parser",
    "run_commission_command",
]
