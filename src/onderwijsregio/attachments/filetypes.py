"""A file's type from its own bytes (contract §3.4), never from its name or declared type.

DOCX and ODT are ZIP containers: only their central directory and one small member are read, with
a cap on what is decompressed, so a ZIP bomb is never extracted.
"""

from __future__ import annotations

import codecs
import re
import zipfile
from typing import IO

PDF, DOC, RTF, TXT = "application/pdf", "application/msword", "application/rtf", "text/plain"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ODT = "application/vnd.oasis.opendocument.text"
PNG, JPEG, WEBP = "image/png", "image/jpeg", "image/webp"
ALLOWED = (PDF, DOC, DOCX, ODT, RTF, TXT, PNG, JPEG, WEBP)
NAMES = "PDF, DOC, DOCX, ODT, RTF, TXT, PNG, JPEG and WEBP"

_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_WORD_STREAM = "WordDocument".encode("utf-16-le")
_MAX_ZIP_MEMBERS = 10_000
_MAX_MEMBER_READ = 1024 * 1024
_TEXT_CONTROLS = re.compile("[\x00-\x08\x0b\x0e-\x1f]")  # tab, LF, FF and CR are text


def detect(source: IO[bytes]) -> str | None:
    """The content type of an allowed file, or None for anything else."""
    source.seek(0)
    head = source.read(16)
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head.startswith(b"{\\rtf"):
        return RTF
    if head.startswith(_OLE2):
        return DOC if _is_word_binary(source) else None
    if head.startswith(b"PK\x03\x04"):
        return _office_zip(source)
    return TXT if _is_text(source) else None


def _is_word_binary(source: IO[bytes]) -> bool:
    """An OLE2 compound file is Word when it holds a `WordDocument` stream (its directory names it)."""
    source.seek(0)
    carry = b""
    while chunk := source.read(1024 * 1024):
        if _WORD_STREAM in carry + chunk:
            return True
        carry = chunk[-len(_WORD_STREAM) :]
    return False


def _office_zip(source: IO[bytes]) -> str | None:
    source.seek(0)
    try:
        with zipfile.ZipFile(source) as archive:
            members = archive.infolist()
            if len(members) > _MAX_ZIP_MEMBERS:
                return None
            names = {member.filename for member in members}
            if "mimetype" in names and _member_text(archive, "mimetype") == ODT:
                return ODT
            if "[Content_Types].xml" in names and "word/document.xml" in names:
                types = _member_text(archive, "[Content_Types].xml")
                return DOCX if "wordprocessingml.document.main+xml" in types else None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, RuntimeError, ValueError):
        return None
    return None


def _member_text(archive: zipfile.ZipFile, name: str) -> str:
    """At most 1 MiB of one member, decompressed: enough to tell, never a bomb's payload."""
    with archive.open(name) as member:
        return member.read(_MAX_MEMBER_READ).decode("utf-8", errors="replace").strip()


def _is_text(source: IO[bytes]) -> bool:
    """UTF-8 text without control characters (tab, line breaks and form feed aside), read a piece
    at a time."""
    source.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    seen_any = False
    try:
        while piece := source.read(1024 * 1024):
            seen_any = True
            if _TEXT_CONTROLS.search(decoder.decode(piece)):
                return False
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return seen_any
