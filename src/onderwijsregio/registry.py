"""Imports every domain module that registers Mutation Engine operations, for processes that apply
mutations without serving the API (the app imports them through its routes)."""

from __future__ import annotations


def register_operations() -> None:
    from onderwijsregio.attachments import apply as attachments  # noqa: F401
    from onderwijsregio.candidates import apply as candidates  # noqa: F401
    from onderwijsregio.interactions import apply as interactions  # noqa: F401
    from onderwijsregio.sandbox import apply as sandbox  # noqa: F401
    from onderwijsregio.sessions import apply as sessions  # noqa: F401
    from onderwijsregio.webhooks import apply as webhooks  # noqa: F401
