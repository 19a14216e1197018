"""Every `python -m dime.X ...` command in the README and docs/ is accepted by that command's parser.

Running each would take hours (profiling, validation); parsing catches the drift that matters most:
a documented flag that no longer exists or a value it no longer takes.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "profiles" / "README.md", ROOT / "benchmarks" / "README.md",
        *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDERS = ("...", "…", "[", "NAME")


def _parser(module: str, args: list[str]):
    if module == "samples":
        from dime.capture.samples import build_parser
    elif module == "profile":
        from dime.profiling.profiler import build_parser
    elif module == "predict":
        from dime.profiling.predictcli import build_parser
    elif module == "solve":
        from dime.plan.solve import build_parser
    elif module == "sweep":
        from dime.sweep.cli import build_parser
    elif module == "validate":
        from dime.run.validate import build_parser
    elif module == "run":
        from dime.run.cli import build_local_parser, build_parser

        if args and args[0] == "local":
            return build_local_parser(), args[1:]
    elif module == "energy":
        from dime.profiling.power.join import _build_parser as build_parser
    elif module == "powerlog":
        from dime.profiling.power.powerlog import _build_parser as build_parser
    else:
        raise AssertionError(f"unknown command dime.{module}")
    return build_parser(), args


def documented_commands() -> list[tuple[str, str, str]]:
    """(doc, command, arguments) of every complete command in a code block or inline code."""
    out = []
    for doc in DOCS:
        text = re.sub(r"\\\n\s*", " ", doc.read_text())  # join continued shell lines
        spans = [line for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S) for line in block.splitlines()]
        spans += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for span in spans:
            m = re.match(r"\s*(?:\$ )?(?:sudo )?(?:\.venv/bin/)?python -m dime\.(\w+)(.*)", span)
            if not m or any(p in span for p in PLACEHOLDERS) or "\\|" in span:
                continue
            rest = m.group(2).split(" #", 1)[0].strip()
            # a bare subcommand name is a reference, and one-letter capitals (X, P) are placeholders
            if "--" in rest and not re.search(r"(^|\s)[A-Z](\s|$)", rest):
                out.append((doc.relative_to(ROOT).as_posix(), m.group(1), rest))
    return out


COMMANDS = documented_commands()


def test_the_docs_document_commands():
    assert len(COMMANDS) >= 15, COMMANDS


@pytest.mark.parametrize("doc, module, rest", COMMANDS, ids=[f"{d}:{m}:{i}" for i, (d, m, _) in enumerate(COMMANDS)])
def test_documented_command_parses(doc, module, rest):
    parser, args = _parser(module, shlex.split(rest))
    parser.parse_args(args)  # OneLineParser raises UsageError on an unknown flag or a bad value
