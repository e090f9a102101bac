"""The queue figures, read from the database when Prometheus scrapes, and the exposition text.

Queue depth comes from the lanes' counters (accepted minus applied, one row per region and mode), and
the oldest waiting mutation is the one right after the lane's last applied one, found by the unique
(region_id, sandbox, seq) index: the cost grows with the number of lanes, never with the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.engine.models import Mutation, MutationCounter, MutationLane
from onderwijsregio.metrics.registry import REGISTRY

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaneState:
    region_id: str
    sandbox: bool
    depth: int  # accepted, not yet applied
    oldest_accepted_at: datetime | None  # of the next mutation to apply; None when the lane is empty


async def queue_state(session: AsyncSession) -> list[LaneState]:
    rows = await session.execute(
        select(
            MutationLane.region_id,
            MutationLane.sandbox,
            MutationCounter.last_accepted_seq - MutationLane.last_done_seq,
            Mutation.created_at,
        )
        .join(
            MutationCounter,
            and_(
                MutationCounter.region_id == MutationLane.region_id,
                MutationCounter.sandbox == MutationLane.sandbox,
            ),
        )
        .outerjoin(
            Mutation,
            and_(
                Mutation.region_id == MutationLane.region_id,
                Mutation.sandbox == MutationLane.sandbox,
                Mutation.seq == MutationLane.last_done_seq + 1,
            ),
        )
        .execution_options(cross_region=True)  # the whole queue, by region id only: no region's data
    )
    return [LaneState(region, sandbox, max(0, int(depth)), oldest) for region, sandbox, depth, oldest in rows]


class QueueCollector(Collector):
    """The queue gauges of one scrape, from figures already read (collect() cannot await)."""

    def __init__(self, lanes: list[LaneState] | None, now: datetime) -> None:
        self.lanes, self.now = lanes, now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "onderwijsregio_queue_query_ok",
            "1 when this scrape could read the queue figures from the database, else 0",
            value=0 if self.lanes is None else 1,
        )
        if self.lanes is None:
            return
        labels = ["region_id", "sandbox"]
        depth = GaugeMetricFamily(
            "onderwijsregio_queue_depth", "Mutations accepted and not yet applied", labels=labels
        )
        age = GaugeMetricFamily(
            "onderwijsregio_queue_oldest_age_seconds",
            "Age of the oldest mutation not yet applied; 0 when none waits",
            labels=labels,
        )
        for lane in self.lanes:
            values = [lane.region_id, "true" if lane.sandbox else "false"]
            depth.add_metric(values, lane.depth)
            waited = 0.0
            if lane.depth and lane.oldest_accepted_at is not None:
                waited = max(0.0, (self.now - lane.oldest_accepted_at).total_seconds())
            age.add_metric(values, waited)
        yield depth
        yield age


async def exposition(sessions: async_sessionmaker[AsyncSession], now: datetime) -> bytes:
    """This process's metrics, then the queue's; a database that does not answer leaves the queue out
    (and says so) rather than failing the whole scrape."""
    lanes: list[LaneState] | None
    try:
        async with sessions() as session:
            lanes = await queue_state(session)
    except Exception as error:
        log.warning("queue figures for /metrics not read: %s", type(error).__name__)
        lanes = None
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(QueueCollector(lanes, now))
    return generate_latest(REGISTRY) + generate_latest(scrape)
