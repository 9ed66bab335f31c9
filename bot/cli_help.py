"""What `partnerbot --help`, `partnerbot COMMAND --help` and `--version` say beyond each command's
one-line help: a description for every subcommand, and the CSV header the imports expect (taken
from the parsers in store, so the help cannot drift from what the import accepts)."""
from __future__ import annotations

import argparse

from store.leads import LEAD_CSV_COLUMNS
from store.members import MEMBER_CSV_COLUMNS


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("partnerbot")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _csv_help(columns: tuple[str, ...], example: str, notes: str) -> str:
    return f"The first line of the file must be this header:\n\n  {','.join(columns)}\n\nfor example:\n\n" \
           f"  {','.join(columns)}\n  {example}\n\n{notes}"


# What `partnerbot COMMAND --help` says beyond the one-line help shown in the command list.
DETAILS = {
    "members import": lambda: _csv_help(
        MEMBER_CSV_COLUMNS, "zhangwei,张伟,partner,星河科技,华东,制造;零售",
        "role is partner, marketer or admin; partner is required for partner staff; industries are separated by ;\n"
        "An optional tags column (separated by ;) gives the tags broadcasts target with tag:NAME.\n"
        "Members are upserted by userid. Every line is checked first: one bad line and nothing is imported."),
    "leads import": lambda: _csv_help(
        LEAD_CSV_COLUMNS, "赵总,华星制造,13800000001,上海,制造,expo,",
        "pool is empty for the public pool, else a partner's name (that partner's pool).\n"
        "Every bad line is reported by its number and nothing is imported; a phone+company already stored\n"
        "is skipped and listed."),
    "members sync": lambda: "Reads the department's people with WeCom's user/list (the app needs contact read\n"
                            "access). Existing members keep their region and industries; disabled or departed\n"
                            "people are listed, not imported.",
}


def describe(parser: argparse.ArgumentParser, path: str = "") -> None:
    """Give every subcommand a description (its one-line help, plus DETAILS) for `COMMAND --help`."""
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, subparser in action.choices.items():
            full = f"{path} {name}".strip()
            if subparser.description is None:
                line = helps.get(name) or ""
                subparser.description = (line[:1].upper() + line[1:] + ".") if line else None
            if full in DETAILS:
                subparser.epilog = DETAILS[full]()
                subparser.formatter_class = argparse.RawDescriptionHelpFormatter
            describe(subparser, full)
