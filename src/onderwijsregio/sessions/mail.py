"""The verification mail: its own outbox (`verification_requests`) and sender, never behind the
mutation queue (contract §3.5).

The sender claims due requests, looks each address up (known ones get a code, unknown ones are
dropped), and mails the code by SMTP, or without SMTP writes a line with the code masked to the log.
A request is deleted once handled, so no address stays behind.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.engine.signing import SecretBox
from onderwijsregio.engine.wakeup import Waker
from onderwijsregio.metrics.registry import MAIL_FAILED, MAIL_SENT
from onderwijsregio.regions.models import Region
from onderwijsregio.scope import Scope
from onderwijsregio.sessions.models import VerificationRequest
from onderwijsregio.sessions.service import is_known, issue_code

log = logging.getLogger(__name__)
CLAIM = timedelta(seconds=60)  # a claimed request waits this long before another sender retries it
MAX_ATTEMPTS = 5
BATCH = 20


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool

    @classmethod
    def from_url(cls, url: str) -> SmtpServer | None:
        """`smtp://user:pass@host:port` (STARTTLS when offered) or `smtps://…`; empty: no server."""
        if not url:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("ONDERWIJSREGIO_SMTP_URL must be smtp://host:port or smtps://host:port")
        implicit_tls = parts.scheme == "smtps"
        return cls(
            parts.hostname,
            parts.port or (465 if implicit_tls else 25),
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            implicit_tls,
        )


def compose(sender: str, recipient: str, region_name: str, code: str) -> EmailMessage:
    """Dutch first, then English; a plain-text part and an HTML part."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = f"Je verificatiecode / Your verification code – {region_name}"
    message.set_content(
        f"Je verificatiecode voor {region_name} is {code}. De code is 10 minuten geldig en werkt één keer.\n"
        "Heb je geen code aangevraagd? Dan kun je deze e-mail negeren.\n\n"
        f"Your verification code for {region_name} is {code}. It is valid for 10 minutes and works once.\n"
        "Did you not ask for a code? Then you can ignore this e-mail.\n"
    )
    name = html.escape(region_name)
    message.add_alternative(
        f"""<!doctype html><html lang="nl"><body>
<p>Je verificatiecode voor {name} is <strong style="font-size:1.4em">{code}</strong>.
De code is 10 minuten geldig en werkt één keer.</p>
<p>Heb je geen code aangevraagd? Dan kun je deze e-mail negeren.</p>
<hr><p lang="en">Your verification code for {name} is <strong>{code}</strong>.
It is valid for 10 minutes and works once.</p>
<p lang="en">Did you not ask for a code? Then you can ignore this e-mail.</p>
</body></html>""",
        subtype="html",
    )
    return message


@dataclass
class MailSender:
    write_sessions: async_sessionmaker[AsyncSession]
    box: SecretBox
    server: SmtpServer | None
    sender: str
    waker: Waker
    clock: Callable[[], datetime]

    async def run_forever(self) -> None:
        while True:
            try:
                handled = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("mail sender: %s; trying again", type(error).__name__)
                handled = 0
            if not handled:
                await self.waker.wait(1.0)

    async def run_once(self) -> int:
        claimed = await self._claim()
        for scope, request_id in claimed:
            await self._handle(scope, request_id)
        return len(claimed)

    async def _claim(self) -> list[tuple[Scope, str]]:
        now = self.clock()
        async with self.write_sessions() as session, session.begin():
            rows = await session.scalars(
                select(VerificationRequest)
                .where(VerificationRequest.next_attempt_at <= now)
                .order_by(VerificationRequest.next_attempt_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
                .execution_options(cross_region=True)  # one outbox for every region
            )
            claimed = []
            for row in rows:
                row.next_attempt_at = now + CLAIM
                claimed.append((Scope(row.region_id, row.sandbox), row.id))
            return claimed

    async def _handle(self, scope: Scope, request_id: str) -> None:
        message = await self._prepare(scope, request_id)
        if message is None:
            return
        try:
            await self._send(message)
        except Exception as error:
            MAIL_FAILED.inc()
            log.warning("verification mail not sent: %s; will retry", type(error).__name__)
            await self._retry_later(scope, request_id)
            return
        MAIL_SENT.inc()
        await self._forget(scope, request_id)

    async def _prepare(self, scope: Scope, request_id: str) -> EmailMessage | None:
        """The mail for a request; None (and the request gone) when the address is not known here."""
        async with self.write_sessions() as session, session.begin():
            request = await session.get(VerificationRequest, (scope.region_id, scope.sandbox, request_id))
            if request is None:
                return None
            if request.sealed_code is None:
                if not await is_known(session, scope, request.email_key):
                    await session.delete(request)
                    return None
                code = await issue_code(
                    session, scope, self.box.fingerprint_key, request.email_key, self.clock()
                )
                request.sealed_code = self.box.seal(code)
            region = await session.get(Region, scope.region_id)
            region_name = region.name if region is not None else "Onderwijsregio"
            return compose(self.sender, request.email, region_name, self.box.open(request.sealed_code))

    async def _send(self, message: EmailMessage) -> None:
        if self.server is None:
            log.info("verification mail (no SMTP server configured): code ******")
            return
        await aiosmtplib.send(
            message,
            hostname=self.server.host,
            port=self.server.port,
            username=self.server.username,
            password=self.server.password,
            use_tls=self.server.implicit_tls,
            timeout=15,
        )

    async def _retry_later(self, scope: Scope, request_id: str) -> None:
        async with self.write_sessions() as session, session.begin():
            request = await session.get(VerificationRequest, (scope.region_id, scope.sandbox, request_id))
            if request is None:
                return
            request.attempts += 1
            if request.attempts >= MAX_ATTEMPTS:
                await session.delete(request)
            else:
                request.next_attempt_at = self.clock() + timedelta(seconds=10 * 2**request.attempts)

    async def _forget(self, scope: Scope, request_id: str) -> None:
        async with self.write_sessions() as session, session.begin():
            request = await session.get(VerificationRequest, (scope.region_id, scope.sandbox, request_id))
            if request is not None:
                await session.delete(request)
