"""Helpers for tests that drive the CLI: run a command, and check that it failed with one clear line."""

from __future__ import annotations

from click.testing import CliRunner

from resnet_edge.cli import cli


def run(*args):
    """``resnet-edge ARGS`` in-process (arguments made text)."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(r, *fragments) -> str:
    """Exit code 1, exactly one ``Error:`` line holding every fragment, and no traceback; the line."""
    assert r.exit_code == 1, r.output
    lines = [line for line in r.output.strip().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
