"""The engine's background tasks in one process: workers, callback delivery, maintenance, LISTEN.

`serve` runs them beside the API (ONDERWIJSREGIO_WORKERS worker tasks, none with --no-worker);
`onderwijsregio worker` runs them alone. Any number of processes may run them at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.engine.callbacks import CallbackDispatcher
from onderwijsregio.engine.maintenance import Maintenance
from onderwijsregio.engine.signing import SecretBox
from onderwijsregio.engine.wakeup import (
    CALLBACKS_CHANNEL,
    MAIL_CHANNEL,
    MUTATIONS_CHANNEL,
    Waker,
    listen_forever,
)
from onderwijsregio.engine.worker import EngineTuning, Worker
from onderwijsregio.outbound.urls import UrlPolicy
from onderwijsregio.storage.files import FileStore

log = logging.getLogger(__name__)


def _name_of(job: Coroutine[Any, Any, None]) -> str:
    return getattr(job, "__qualname__", "engine task")


@dataclass
class Engine:
    database_url: str
    sessions: async_sessionmaker[AsyncSession]
    write_sessions: async_sessionmaker[AsyncSession]
    box: SecretBox
    policy: UrlPolicy
    files: FileStore
    wipe_at: time
    tuning: EngineTuning = field(default_factory=EngineTuning)
    mutations_waker: Waker = field(default_factory=Waker)
    callbacks_waker: Waker = field(default_factory=Waker)
    mail_waker: Waker = field(default_factory=Waker)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def worker(self, number: int) -> Worker:
        name = f"{socket.gethostname()}:{os.getpid()}:{number}"
        return Worker(
            name,
            self.write_sessions,
            self.mutations_waker,
            self.callbacks_waker,
            self.files,
            self.policy,
            self.tuning,
        )

    def dispatcher(self) -> CallbackDispatcher:
        return CallbackDispatcher(self.write_sessions, self.callbacks_waker, self.box, self.policy)

    def start(self, workers: int, outboxes: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()) -> None:
        """Starts the background tasks, the domains' outbox senders (`outboxes`) among them; with no
        workers, nothing runs here (another process works)."""
        if workers <= 0:
            return
        jobs = [self.worker(n).run_forever() for n in range(workers)]
        jobs += [run() for run in outboxes]
        jobs += [
            self.dispatcher().run_forever(),
            Maintenance(self.write_sessions, self.mutations_waker, self.wipe_at, self.files).run_forever(),
        ]
        if self.database_url.startswith("postgresql"):
            channels = {
                MUTATIONS_CHANNEL: self.mutations_waker,
                CALLBACKS_CHANNEL: self.callbacks_waker,
                MAIL_CHANNEL: self.mail_waker,
            }
            jobs.append(listen_forever(self.database_url, channels))
        self._tasks = [asyncio.create_task(job, name=_name_of(job)) for job in jobs]

    async def stop(self, within: float = 30.0) -> None:
        """Cancels the background tasks and waits for them, at most `within` seconds: a task that
        does not end is logged with where it hangs, and left behind rather than blocking shutdown."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=within)
            for task in stuck:
                frames = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in task.get_stack(limit=8))
                log.error(
                    "engine task %s did not stop within %s s; it waits in %s", task.get_name(), within, frames
                )
        self._tasks = []
