"""--help of every command: it explains itself, and text in square brackets is not swallowed as Rich markup."""

import pytest
from typer.testing import CliRunner

from bdscan.cli.app import app

runner = CliRunner()


def help_text(*command: str) -> str:
    r = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "250"}, terminal_width=250)
    assert r.exit_code == 0, r.output
    return " ".join(r.output.split())  # panel borders and wrapping aside


@pytest.mark.parametrize("command", [[], ["clean"], ["scan"], ["inspect"], ["export"], ["report"]])
def test_help_runs(command):
    assert "Usage:" in help_text(*command)


def test_hand_written_defaults_are_shown():
    scan = help_text("scan")
    for shown in ("[default: text]", "[default: 2.0]", "[default: on]", "[default: auto]", "[default: 0]",
                  "'samples' in [tool.bdscan]", "html"):
        assert shown in scan
    clean = help_text("clean")
    for shown in ("[default: MODEL's folder/<name>.bdscan]", "[default: 10,7,5,4,3,2.5,2,1.5]", "[default: 1,0.5,0]"):
        assert shown in clean


@pytest.mark.parametrize("command,codes", [("scan", "01234"), ("clean", "0124")])
def test_exit_codes_one_per_line(command, codes):
    # typer keeps the docstring's line breaks: a code wrapped onto the next line read as "1: a / backdoor ..."
    r = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"}, terminal_width=250)
    starts = {line.strip()[:3] for line in r.output.splitlines()}
    assert "Exit codes:" in r.output
    for code in codes:
        assert f"{code}  " in starts
