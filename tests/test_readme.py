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


def _tables(text: str) -> list[list[str]]:
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def test_every_table_has_its_header() -> None:
    """A blank line inside a table splits it: the second half renders as plain text (the Admin API
    table once did)."""
    for doc in (REPO / "README.md", REPO / "docs" / "DESIGN.md"):
        for table in _tables(doc.read_text(encoding="utf-8")):
            assert len(table) >= 3 and re.fullmatch(r"\|(---\|)+", table[1]), f"{doc.name}: {table[0][:80]}"


def test_each_config_key_is_documented_once() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    keys = [key for row in section.splitlines() if row.startswith("| `")
            for key in re.findall(r"`([a-z_]+\.[a-z_*]+)`", row.split("|")[1])]
    assert keys and len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def test_the_readme_points_only_at_files_in_the_repository() -> None:
    """The README stands on its own: every file it links or names (docs, tests, modules) is in the repo."""
    for doc in (REPO / "README.md", REPO / "docs" / "DESIGN.md"):
        text = doc.read_text(encoding="utf-8")
        links = [link.split("#")[0] for link in re.findall(r"\]\(([^)]+)\)", text)]
        named = re.findall(r"`((?:\.\./|bot/|handlers/|store/|tests/|bench/|assets/|docs/)[\w./-]*)`", text)
        for target in [*links, *named]:
            if target and not target.startswith(("http://", "https://")):
                # `store/ownership.hand_over` names a function in store/ownership.py
                paths = {target, re.sub(r"\.\w+$", ".py", target)}
                found = [f for p in paths for f in ((doc.parent / p).resolve(), (REPO / p).resolve()) if f.exists()]
                # inside the repository: ../shared/DESIGN.md exists on the machine it was written on, not in a clone
                assert any(f.is_relative_to(REPO) for f in found), f"{doc.name}: {target}"


def test_docs_name_every_chat_command_in_both_languages() -> None:
    from handlers import COMMANDS

    design = (REPO / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    section = design.split("## 2. Chat commands", 1)[1].split("\n## ", 1)[0]
    words = set(re.findall(r"`([^` ]+)", section))
    missing = [word for c in COMMANDS for word in (c.name, c.name_zh) if word not in words]
    assert not missing, f"docs/DESIGN.md §2 does not name: {missing}"
