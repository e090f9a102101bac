"""Settings from ONDERWIJSREGIO_* environment variables and a `.env` file (contract §4)."""

from __future__ import annotations

import os
import secrets
from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/onderwijsregio.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ONDERWIJSREGIO_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = DEFAULT_DATABASE_URL
    rate_limit_storage: str = "memory://"
    storage_url: str = "file://./var/attachments"
    smtp_url: str = ""
    mail_from: str = "no-reply@localhost"
    allow_http_urls: bool = False
    url_allowlist: str = ""
    workers: int = Field(default=1, ge=0, le=64)
    sandbox_reset_at: str = "03:00"
    env: Literal["production", "development"] = "production"
    secret_key: str = ""
    var_dir: Path = Path("var")
    # The bearer token Prometheus sends to /metrics; empty: /metrics answers 404 (docs/operations.md).
    metrics_token: str = ""
    # Engine tuning (not part of the contract; tests shorten the lease to rescue work quickly).
    engine_lease_seconds: float = Field(default=30.0, gt=0)
    engine_batch_size: int = Field(default=50, ge=1, le=1000)
    engine_poll_seconds: float = Field(default=1.0, gt=0)
    engine_max_stall_seconds: float = Field(default=600.0, gt=0)

    @field_validator("sandbox_reset_at")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        time.fromisoformat(value)  # HH:MM, Europe/Amsterdam
        return value

    @property
    def wipe_at(self) -> time:
        return time.fromisoformat(self.sandbox_reset_at)

    @field_validator("metrics_token")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value) < 16:
            raise ValueError("use at least 16 characters (e.g. `openssl rand -hex 32`), or leave it empty")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("use sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    def cursor_secret(self) -> bytes:
        """The cursor-signing secret: the configured one, else one generated once into var/."""
        if self.secret_key:
            return self.secret_key.encode()
        return _secret_from_file(self.var_dir / "secret-key")


def ensure_private_dir(path: Path) -> None:
    """var/ holds the default database, key files and secrets: only the service's user may look inside."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _secret_from_file(path: Path) -> bytes:
    """Read var/secret-key, creating it (mode 0600) on first use; a race between processes keeps one."""
    ensure_private_dir(path.parent)
    if not path.exists():
        # Written to a private temporary file, then linked into place: a concurrent reader never sees
        # a half-written secret, and of two racing processes exactly one link wins.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return path.read_text().strip().encode()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
