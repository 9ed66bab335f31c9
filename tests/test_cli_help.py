"""The command line explains itself: `--version`, a description for every subcommand, the CSV header
in the imports' help, and the README's command table agreeing with the parser."""
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from bot.cli import _parser, main
from store.leads import LEAD_CSV_COLUMNS
from store.members import MEMBER_CSV_COLUMNS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _subcommands(parser=None, path=()):  # type: ignore[no-untyped-def]
    """(("members", "import"), its parser), … for every leaf subcommand."""
    parser = parser or _parser()
    if not parser._subparsers:
        yield path, parser
        return
    for action in parser._subparsers._group_actions:
        for name, sub in action.choices.items():
            yield from _subcommands(sub, (*path, name))


def test_version() -> None:
    result = subprocess.run([sys.executable, "-m", "bot", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"partnerbot {version('partnerbot')}"


def test_every_subcommand_has_a_description_and_a_readme_row() -> None:
    table = README.split("## Command line", 1)[1].split("\n## ", 1)[0]
    commands = list(_subcommands())
    assert len(commands) >= 8
    for path, parser in commands:
        assert parser.description and len(parser.description) > 10, path
        assert f"`partnerbot {' '.join(path)}" in table, f"partnerbot {' '.join(path)} is not in the README"


@pytest.mark.parametrize("command, columns", [("members", MEMBER_CSV_COLUMNS), ("leads", LEAD_CSV_COLUMNS)])
def test_the_imports_help_shows_the_csv_header(command: str, columns: tuple[str, ...],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "import", "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert f"\n  {','.join(columns)}\n" in shown
    assert f"`{','.join(columns)}`" in README  # the README names the same header


def test_members_sync_partner_is_described_alike_in_help_and_readme(capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """--partner is required for partner staff only (the code refuses without it for --role partner):
    the README once called it required, the help optional."""
    with pytest.raises(SystemExit):
        main(["members", "sync", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "[--partner NAME]" in shown and "required with --role partner, the default" in shown
    row = next(line for line in README.splitlines() if line.startswith("| `partnerbot members sync"))
    assert "[--partner NAME]" in row and re.search(r"`--partner` is required for partner staff", row)
    for key, value in (("CORP_ID", "wwx"), ("AGENT_ID", "1000002"), ("SECRET", "s"), ("TOKEN", "t"),
                       ("ENCODING_AES_KEY", "a" * 43)):
        monkeypatch.setenv(f"PARTNERBOT_WECOM_{key}", value)
    assert main(["members", "sync", "--department", "1"]) == 2  # partner staff by default: refused, one line
    assert capsys.readouterr().err.strip() == "partnerbot: members sync: partner staff need --partner NAME"
