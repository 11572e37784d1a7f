"""docs/commissioning.md: its site files load, and the commands it shows exist with the options
it names (the walk-through itself was run by hand against the simulators)."""

from __future__ import annotations

import re

import pytest

from gateway.cli import _parser
from gateway.config import load_config_text
from tests.commission_support import REPO

DOC = (REPO / "docs" / "commissioning.md").read_text()


@pytest.mark.parametrize("block", re.findall(r"```yaml\n(.*?)```", DOC, re.DOTALL))
def test_every_site_file_in_the_doc_loads(block: str) -> None:
    config = load_config_text(block)
    assert config.devices


@pytest.mark.parametrize("line", [
    line for line in re.findall(r"^(?:\$ )?propgw [^\n|]*", DOC, re.MULTILINE)
    if "[" not in line and "..." not in line])
def test_every_propgw_command_line_in_the_doc_parses(line: str) -> None:
    words = line.removeprefix("$ ").split("#")[0].split()[1:]
    args = _parser().parse_args(words)
    assert args.command in {"read", "watch", "sim", "run", "check-config"}


def test_the_readme_links_the_page() -> None:
    assert "(docs/commissioning.md)" in (REPO / "README.md").read_text()
