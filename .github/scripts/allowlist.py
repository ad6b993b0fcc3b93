"""The vulnerability allow-list (.github/vulnerability-allowlist, Trivy's .trivyignore format): parse it, check it,
and hand its live ids to pip-audit.

Trivy reads the file itself; pip-audit has no ignore file, so the dependency audit of pr.yml runs
``python .github/scripts/allowlist.py ignore-args`` and passes what it prints. An entry is live before its
expiry date and dead from that day on, as Trivy counts it (``exp:`` is midnight UTC of that day).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ALLOWLIST = Path(__file__).resolve().parents[1] / "vulnerability-allowlist"
MAX_DAYS = 180
"""An entry expires at most this many days after the list's review date."""

_ID = r"CVE-\d{4}-\d{4,}|GHSA(?:-[23456789cfghjmpqrvwx]{4}){3}|PYSEC-\d{4}-\d+"
_ENTRY = re.compile(rf"^(?P<id>{_ID})\s+exp:(?P<expires>\S+)\s+#\s*(?P<reason>\S.*)$")
_REVIEWED = re.compile(r"^#\s*reviewed:\s*(?P<date>\S+)\s*$")


class AllowListError(ValueError):
    """The allow-list does not follow its format (the message names the line)."""


@dataclass(frozen=True)
class Entry:
    """One accepted vulnerability: its id, the day it stops being accepted, and why it is accepted."""

    id: str
    expires: date
    reason: str
    line: int


@dataclass(frozen=True)
class AllowList:
    """The entries and the date the list was last reviewed."""

    reviewed: date
    entries: tuple[Entry, ...]


def _date(text: str, line: int) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise AllowListError(f"line {line}: {text!r} is not a YYYY-MM-DD date") from None


def parse(text: str) -> AllowList:
    """The allow-list in ``text``; `AllowListError` for an entry without id, expiry or reason, or no review date."""
    reviewed: date | None = None
    entries: list[Entry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if match := _REVIEWED.match(line):
                reviewed = _date(match["date"], number)
            continue
        match = _ENTRY.match(line)
        if match is None:
            raise AllowListError(f"line {number}: {line!r} is not '<id> exp:<YYYY-MM-DD> # <reason>'")
        entries.append(Entry(match["id"], _date(match["expires"], number), match["reason"].strip(), number))
    if reviewed is None:
        raise AllowListError("no '# reviewed: YYYY-MM-DD' line")
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise AllowListError(f"line {entry.line}: {entry.id} is listed twice")
        seen.add(entry.id)
    return AllowList(reviewed, tuple(entries))


def problems(allow: AllowList) -> list[str]:
    """What is wrong with a parsed list as of its review date: entries already expired or expiring too late."""
    found = []
    latest = allow.reviewed + timedelta(days=MAX_DAYS)
    for entry in allow.entries:
        if entry.expires <= allow.reviewed:
            found.append(f"line {entry.line}: {entry.id} expired on {entry.expires} (reviewed {allow.reviewed})")
        elif entry.expires > latest:
            found.append(f"line {entry.line}: {entry.id} expires {entry.expires}, after {latest} ({MAX_DAYS} days)")
    return found


def live(allow: AllowList, today: date) -> list[Entry]:
    """The entries still accepted on ``today``."""
    return [entry for entry in allow.entries if entry.expires > today]


def ignore_args(allow: AllowList, today: date) -> list[str]:
    """pip-audit's arguments ignoring the entries live on ``today``."""
    return [arg for entry in live(allow, today) for arg in ("--ignore-vuln", entry.id)]


def main(argv: list[str] | None = None) -> int:
    """``ignore-args``: print pip-audit's ignore arguments on one line; ``check``: report the list's problems."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["ignore-args", "check"])
    parser.add_argument("--file", type=Path, default=ALLOWLIST)
    parser.add_argument("--today", type=date.fromisoformat, default=datetime.now(UTC).date(), help="YYYY-MM-DD")
    args = parser.parse_args(argv)
    try:
        allow = parse(args.file.read_text(encoding="utf-8"))
    except AllowListError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    if args.command == "check":
        for problem in problems(allow):
            print(f"{args.file}: {problem}", file=sys.stderr)
        return 1 if problems(allow) else 0
    print(" ".join(ignore_args(allow, args.today)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
