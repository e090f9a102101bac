"""A real S3 emulator (moto's standalone server) on 127.0.0.1, and the environment that points at it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx

from tests.live import free_port

MOTO_SERVER = Path(sys.executable).with_name("moto_server")


@dataclass(frozen=True)
class S3Emulator:
    endpoint: str

    def environment(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="eu-west-1",
        )

    def new_bucket(self) -> str:
        name = f"attachments-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        return name

    def keys(self, bucket: str) -> list[str]:
        return [entry["Key"] for entry in self.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


@contextlib.contextmanager
def s3_emulator() -> Iterator[S3Emulator]:
    port = free_port()
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{endpoint}/moto-api/", timeout=1).status_code < 500:
                    break
            assert time.monotonic() < deadline, "the S3 emulator did not start"
            time.sleep(0.1)
        yield S3Emulator(endpoint)
    finally:
        process.terminate()
        process.wait(timeout=10)
