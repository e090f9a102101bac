"""Fails when a server log holds a credential: the log rule of issue 8 for the servers that CI
starts outside pytest (the shared conformance suite's and Schemathesis's), whose keys and tokens
tests/log_scan.py never learns.

Credentials are found by their shape (every API key starts `oreg_`, every session token `ocs_`,
every webhook signing secret `whsec_`), and by value for the ones given with --secret.

    .venv/bin/python scripts/scan_logs.py LOG_FILE_OR_DIR... [--secret VALUE]...

A directory is searched for `*.log` files. Exit status 1 when anything is found (the lines are
shown with the credential masked), 2 when there was nothing to scan.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from onderwijsregio.api_keys.tokens import KEY_PREFIX
from onderwijsregio.engine.signing import PREFIX as WEBHOOK_SECRET_PREFIX
from onderwijsregio.sessions.service import TOKEN_PREFIX

# A prefix followed by at least 20 characters of the credential's alphabet: long enough that a
# mention of the prefix alone (in a description, say) is not taken for a credential.
SHAPES = {
    "API key": re.compile(re.escape(KEY_PREFIX) + r"[0-9A-Za-z]{20,}"),
    "session token": re.compile(re.escape(TOKEN_PREFIX) + r"[0-9A-Za-z_-]{20,}"),
    "webhook signing secret": re.compile(re.escape(WEBHOOK_SECRET_PREFIX) + r"[0-9A-Za-z+/]{20,}"),
}


def log_files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(path.rglob("*.log"))
        elif path.is_file():
            yield path


def findings(line: str, secrets: list[str]) -> list[tuple[str, str]]:
    """(what, the matched text) for every credential in the line."""
    found = [(what, match.group()) for what, shape in SHAPES.items() for match in shape.finditer(line)]
    found += [("given secret", secret) for secret in secrets if secret in line]
    return found


def masked(line: str, texts: list[str]) -> str:
    for text in texts:
        line = line.replace(text, text[:6] + "…")
    return line.strip()[:300]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--secret", action="append", default=[], help="a value that must not appear")
    options = parser.parse_args(argv)
    secrets = [secret for secret in options.secret if len(secret) >= 6]
    files, lines, hits = 0, 0, []
    for path in log_files(options.paths):
        files += 1
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            lines += 1
            found = findings(line, secrets)
            if found:
                kinds = ", ".join(sorted({what for what, _ in found}))
                hits.append(f"{path}:{number}: {kinds}: {masked(line, [text for _, text in found])}")
    if not files:
        print("log scan: no log files found in " + " ".join(map(str, options.paths)), file=sys.stderr)
        return 2
    if hits:
        print(f"log scan: credentials in {len(hits)} of {lines} log lines:", file=sys.stderr)
        print("\n".join(hits[:50]), file=sys.stderr)
        return 1
    print(f"log scan: {lines} lines in {files} server log files, no credential", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
