"""A pytest plugin: no secret, token, code or seeded personal data in any log line of the whole run.

During the session it keeps
- every log record written in this process, formatted by the production JsonFormatter (so the
  message and the named fields are exactly what a server would write), at the production levels
  (root INFO, httpx and httpcore WARNING; see logs.configure_logging);
- the log files of the servers tests/live.py starts, and the standard error of CLI runs;
- the sensitive values the run handed out or sent: API and admin keys, signing and webhook secrets,
  candidate session tokens, verification codes, and the people the tests made up (names, e-mail
  addresses, phone numbers). Fixtures and helpers register them with `remember`, and the in-process
  test client registers what passes through it (`remember_exchange`).

At the end every line is scanned once for every value; any hit fails the run, and the report shows
the line with the value masked. Values shorter than 6 characters are not kept (too many chance
hits); verification codes have exactly 6 digits, so they are.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from onderwijsregio.logs import JsonFormatter

MIN_LENGTH = 6
# Answer fields that carry a credential or a code. `key` is also a custom field's name, so only a
# value shaped like an API key counts there.
SECRET_FIELDS = frozenset({"key", "secret", "previousSecret", "sessionToken", "sandboxCode"})
# Request fields that carry a person's data (on candidate and candidate-auth routes).
PERSONAL_FIELDS = frozenset({"name", "firstName", "lastName", "email", "phone", "phoneNumber"})
PERSON_ROUTES = ("/candidates", "/auth/candidates")
# Loggers of the test's own machinery (the SMTP and S3 emulators, Hypothesis), not of the server.
TEST_SIDE_LOGGERS = ("mail.log", "werkzeug", "moto", "hypothesis", "tests")
_RUNS = re.compile(r"[A-Za-z0-9]+")


@dataclass
class LogScan:
    values: set[str] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def remember(self, value: Any) -> None:
        """A value that must never appear in a log."""
        if isinstance(value, str) and len(value.strip()) >= MIN_LENGTH:
            self.values.add(value.strip())

    def remember_person(self, person: dict[str, Any]) -> None:
        for name in PERSONAL_FIELDS.intersection(person):
            self.remember(person[name])

    def remember_exchange(self, path: str, sent: Any, answered: Any) -> None:
        """What one API call sent and got back: the people it sent, the credentials it got."""
        if is_person_route(path):
            for person in _dicts(sent):
                self.remember_person(person)
        for found in _dicts(answered):
            for name in SECRET_FIELDS.intersection(found):
                if name != "key" or str(found[name]).startswith("oreg_"):
                    self.remember(found[name])

    def all_lines(self) -> Iterator[str]:
        yield from self.lines
        for path in self.files:
            if path.exists():
                yield from path.read_text(errors="replace").splitlines()


SCAN = LogScan()


def is_person_route(path: str) -> bool:
    return any(route in path for route in PERSON_ROUTES)


def _dicts(document: Any) -> Iterator[dict[str, Any]]:
    """Every object in a JSON document, nested ones included."""
    if isinstance(document, dict):
        yield document
        for value in document.values():
            yield from _dicts(value)
    elif isinstance(document, list):
        for value in document:
            yield from _dicts(value)


def _anchor(value: str) -> str:
    """The value's longest run of letters and digits: a log line holding the value holds this run as
    a whole word (unless letters or digits are glued to the value itself), so one look-up per word of
    a line finds every value that may be in it."""
    return max(_RUNS.findall(value), key=len, default=value)


def find_leaks(lines: Iterable[str], values: Iterable[str]) -> list[tuple[str, str]]:
    """(line, value) for every line holding a value; one pass over the lines."""
    by_anchor: dict[str, list[str]] = {}
    for value in values:
        by_anchor.setdefault(_anchor(value), []).append(value)
    leaks = []
    for line in lines:
        for word in set(_RUNS.findall(line)):
            leaks += [(line, value) for value in by_anchor.get(word, ()) if value in line]
    return leaks


def masked(line: str, value: str, around: int = 300) -> str:
    """The line with the value masked, cut to `around` characters either side of its first place."""
    shown = value[:3] + "*" * (len(value) - 3)
    start = line.index(value)
    end = start + len(value)
    before, after = line[max(0, start - around) : start], line[end : end + around]
    cut = ("…" if start > around else "", "…" if end + around < len(line) else "")
    return f"{cut[0]}{before}«{shown}»{after}{cut[1]}".replace(value, f"«{shown}»")


class _Capture(logging.Handler):
    def __init__(self, scan: LogScan) -> None:
        super().__init__(logging.NOTSET)
        self.scan = scan
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(TEST_SIDE_LOGGERS):
            return
        try:
            self.scan.lines.append(self.format(record))
        except Exception:
            self.handleError(record)


_capture = _Capture(SCAN)
_levels: dict[str, int] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    root = logging.getLogger()
    for name, level in (("", logging.INFO), ("httpx", logging.WARNING), ("httpcore", logging.WARNING)):
        _levels[name] = logging.getLogger(name).level
        logging.getLogger(name).setLevel(level)
    root.addHandler(_capture)


@pytest.hookimpl(trylast=True)  # after the session fixtures' teardown, whose logs count too
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(_capture)
    for name, level in _levels.items():
        logging.getLogger(name).setLevel(level)
    leaks = find_leaks(SCAN.all_lines(), SCAN.values)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    summary = (
        f"log scan: {len(SCAN.lines)} in-process lines and {len(SCAN.files)} server logs against "
        f"{len(SCAN.values)} sensitive values"
    )
    if reporter is not None:
        reporter.write_line(summary)
    if not leaks:
        return
    report = "\n".join(f"  {masked(line, value)}" for line, value in leaks[:50])
    if reporter is not None:
        heading = f"LOG SCAN FAILED: {len(leaks)} log lines hold sensitive values:"
        reporter.write_line(f"{heading}\n{report}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
