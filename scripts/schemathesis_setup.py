"""Prepares the served API for the Schemathesis run: waits until it is up, raises the region's rate
limits, and opens a candidate session in sandbox mode. Prints the session token."""

from __future__ import annotations

import sys
import time

import httpx

API = "/api/v2"
EMAIL = "schemathesis@example.org"


def main(base: str, admin: str, region_id: str, key: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as http:
        _wait_until_up(http)
        limits = {"requestsPerSecond": 5000, "burst": 5000, "keyRequestsPerSecond": 5000, "keyBurst": 5000}
        admin_headers = {"x-api-key": admin}
        raised = http.patch(f"{API}/regions/{region_id}", json={"rateLimit": limits}, headers=admin_headers)
        raised.raise_for_status()
        sandbox = {"x-api-key": key, "x-api-sandbox": "true"}
        candidate = {"name": "Schemathesis", "email": EMAIL, "privacyConsent": True}
        created = http.post(f"{API}/candidates", json=candidate, headers=sandbox)
        created.raise_for_status()
        _wait_until_applied(http, created.json()["data"]["mutationId"], sandbox)
        asked = http.post(f"{API}/auth/candidates/verification", json={"email": EMAIL}, headers=sandbox)
        asked.raise_for_status()
        code = asked.json()["data"]["sandboxCode"]
        login = {"email": EMAIL, "code": code}
        opened = http.post(f"{API}/auth/candidates/sessions", json=login, headers=sandbox)
        opened.raise_for_status()
        print(opened.json()["data"]["sessionToken"])


def _wait_until_up(http: httpx.Client) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if http.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the server did not come up")
        time.sleep(0.2)


def _wait_until_applied(http: httpx.Client, mutation_id: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while http.get(f"{API}/mutations/{mutation_id}", headers=headers).json()["data"]["status"] != "succeeded":
        if time.monotonic() > deadline:
            raise SystemExit("the candidate was not applied")
        time.sleep(0.1)


if __name__ == "__main__":
    main(*sys.argv[1:5])
