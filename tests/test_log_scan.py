"""The whole-run log scan (tests/log_scan.py) really finds what it looks for: proven on synthetic
lines and a private scan, never by leaking anything in the real run."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from tests.log_scan import LogScan, _Capture, find_leaks, masked

KEY = "oreg_3kT9xQ2mZ7vB1nL8pR4sW6yC0dF5gH2jK9aE7uI1oP3qS5tV"
EMAIL = "jan-5d1c0a9f3e@example.org"


def _captured(scan: LogScan, message: str, *args: object, **fields: object) -> str:
    """A record as a server writes it: through the production JsonFormatter, with named fields."""
    record = logging.LogRecord("onderwijsregio.example", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(fields)
    _Capture(scan).handle(record)
    return scan.lines[-1]


def test_the_scan_reports_a_registered_value_in_a_log_line() -> None:
    scan = LogScan()
    for value in (KEY, EMAIL, "Marieke van Oosterhout", "482913"):
        scan.remember(value)
    clean = _captured(scan, "request", path="/api/v2/candidates", status=202)
    leaked_key = _captured(scan, "key=%s was used", KEY)
    leaked_email = _captured(scan, "mail to <%s> bounced", EMAIL)
    leaked_name = _captured(scan, "created Marieke van Oosterhout", region_id="reg_01")
    leaked_code = _captured(scan, "code %s sent", "482913")
    leaks = find_leaks(scan.lines, scan.values)
    assert sorted(leaks) == sorted(
        [
            (leaked_key, KEY),
            (leaked_email, EMAIL),
            (leaked_name, "Marieke van Oosterhout"),
            (leaked_code, "482913"),
        ]
    )
    assert clean not in [line for line, _ in leaks]
    assert leaked_key.startswith("{") and '"logger":"onderwijsregio.example"' in leaked_key


def test_the_report_masks_the_value() -> None:
    line = f'{{"message":"key={KEY}"}}'
    shown = masked(line, KEY)
    assert KEY not in shown and "«ore" in shown and len(shown) == len(line) + 2
    long_line = "a" * 1000 + KEY + "b" * 1000
    assert masked(long_line, KEY, around=10) == f"…{'a' * 10}«ore{'*' * (len(KEY) - 3)}»{'b' * 10}…"


def test_short_values_are_not_kept_but_six_digit_codes_are() -> None:
    scan = LogScan()
    for value in ("Jan", "12345", "123456", "  ", None, 7):
        scan.remember(value)
    assert scan.values == {"123456"}


def test_answers_give_credentials_but_not_custom_field_keys() -> None:
    scan = LogScan()
    answer = {"data": {"key": KEY, "customFields": [{"key": "regions"}], "secret": "whsec_abcdefgh"}}
    scan.remember_exchange("/api/v2/api-keys", {"name": "Not a person"}, answer)
    assert scan.values == {KEY, "whsec_abcdefgh"}


def test_a_code_inside_a_longer_number_is_not_a_hit() -> None:
    assert find_leaks(['{"request_id":"req_9123456789"}'], {"123456"}) == []
    assert find_leaks(['{"message":"code 123456."}'], {"123456"}) != []


def test_test_side_loggers_are_not_captured() -> None:
    scan = LogScan()
    record = logging.LogRecord("mail.log", logging.INFO, __file__, 1, "RCPT %s", (EMAIL,), None)
    _Capture(scan).handle(record)
    assert scan.lines == []


SERVER_LOG_SCANNER = Path(__file__).resolve().parents[1] / "scripts" / "scan_logs.py"


def _scan_server_logs(*args: object) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SERVER_LOG_SCANNER), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_server_log_scan_of_ci_finds_credentials_by_shape_and_by_value(tmp_path: Path) -> None:
    """scripts/scan_logs.py, which CI runs over the conformance and Schemathesis servers' logs."""
    log = tmp_path / "server.log"
    log.write_text('{"message":"request","path":"/api/v2/candidates","status":202}\n')
    assert _scan_server_logs(log).returncode == 0
    token = "ocs_" + "A1b2-C3d4_" * 4
    secret = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    for leaked in (KEY, token, secret):
        log.write_text(f'{{"message":"presented {leaked} was refused"}}\n')
        result = _scan_server_logs(log)
        assert result.returncode == 1, leaked
        assert "server.log:1" in result.stderr and leaked not in result.stderr  # shown masked
    log.write_text('{"message":"hello plain-secret-value"}\n')
    assert _scan_server_logs(log, "--secret", "plain-secret-value").returncode == 1
    assert _scan_server_logs(tmp_path / "nothing-here").returncode == 2
