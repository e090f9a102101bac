"""Small real files of every accepted type, and some that must be refused."""

from __future__ import annotations

import base64
import io
import uuid
import zipfile

WORD_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"


def pdf(tag: str = "") -> bytes:
    return b"%PDF-1.4\n% " + (tag or uuid.uuid4().hex).encode() + b"\n1 0 obj\n<<>>\nendobj\n%%EOF\n"


def png() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(17)


def jpeg() -> bytes:
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(32) + b"\xff\xd9"


def webp() -> bytes:
    return b"RIFF" + (30).to_bytes(4, "little") + b"WEBPVP8 " + bytes(22)


def rtf() -> bytes:
    return b"{\\rtf1\\ansi Hallo}"


def txt(text: str = "Hallo, dit is een motivatie.\nMet een tweede regel.\n") -> bytes:
    return text.encode()


def doc() -> bytes:
    """An OLE2 compound file whose directory names a WordDocument stream."""
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + "WordDocument".encode("utf-16-le") + bytes(64)


def docx(body: str = "Hallo") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "[Content_Types].xml",
            f'<Types><Override PartName="/word/document.xml" ContentType="{WORD_MAIN}"/></Types>',
        )
        archive.writestr("word/document.xml", f"<w:document><w:body>{body}</w:body></w:document>")
    return buffer.getvalue()


def odt() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.text", zipfile.ZIP_STORED)
        archive.writestr("content.xml", "<office:document-content/>")
    return buffer.getvalue()


def zip_bomb_docx() -> bytes:
    """A DOCX-shaped ZIP whose content types member inflates to 200 MiB of zeros."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("[Content_Types].xml", "w") as member:
            zeros = bytes(1024 * 1024)
            for _ in range(200):
                member.write(zeros)
        archive.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


def plain_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "not a document")
    return buffer.getvalue()


def exe() -> bytes:
    return b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(48) + b"PE\x00\x00"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def base64_input(data: bytes, filename: str = "cv.pdf") -> dict[str, str]:
    return {"base64": b64(data), "filename": filename, "contentType": "application/pdf"}
