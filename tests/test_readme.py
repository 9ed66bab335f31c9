"""The README's two set-up commands stay true: CI runs the README's test command word for word."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    top = text.split("---", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", top)


def test_readme_starts_with_exactly_two_setup_commands() -> None:
    demo, tests = _readme_commands()
    assert demo.endswith("partnerbot demo")
    assert tests.endswith("pytest")


def test_ci_runs_the_readme_test_command() -> None:
    _, tests = _readme_commands()
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in ci_lines
