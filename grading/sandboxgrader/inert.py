"""Student output made inert before anyone sees it: plain text, and images verified by their bytes.

Every page that shows a graded notebook (formgrader, which serves it from the Jupyter server's own
origin with the instructor's cookies; the feedback HTML; a notebook opened in Lab) renders
``text/html``, ``application/javascript``, SVG, markdown with raw HTML and widget views as live
content. A student's ``display(HTML('<img src=x onerror=...>'))`` then runs as the instructor
(measured: it wrote files through ``/api/contents`` and opened a root terminal). So an output keeps
only

- ``stream`` text and ``error`` name / value / traceback (rendered escaped by every front end),
- ``text/plain``,
- ``image/png``, ``image/jpeg``, ``image/gif`` whose decoded bytes start with that format's magic
  number (an image element cannot run script; SVG can, so SVG is dropped),

and every other MIME type is replaced by a plain-text note naming what was removed. Output and cell
metadata are dropped (they steer renderers). Markdown a student wrote is escaped: no raw HTML, no
``javascript:`` links, no images that would fetch a URL.
"""

from __future__ import annotations

import base64
import binascii
import re

IMAGE_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}
MAX_TEXT = 200_000
_SCHEME = re.compile(r"(?i)\b(javascript|vbscript|data|file)(\s*):")


def _text(value) -> str:
    if isinstance(value, list):
        value = "".join(str(v) for v in value)
    return str(value)[:MAX_TEXT] if value is not None else ""


def valid_image(mime: str, payload) -> bool:
    """True when ``payload`` (base64 text) decodes to bytes of the format ``mime`` names."""
    if mime not in IMAGE_MAGIC or not isinstance(payload, (str, list)):
        return False
    try:
        raw = base64.b64decode("".join(payload) if isinstance(payload, list) else payload, validate=False)
    except (binascii.Error, ValueError):
        return False
    return any(raw.startswith(magic) for magic in IMAGE_MAGIC[mime])


def output(out: dict) -> dict:
    """An inert copy of one notebook output (a plain dict)."""
    kind = out.get("output_type")
    if kind == "stream":
        name = out.get("name") if out.get("name") in ("stdout", "stderr") else "stdout"
        return {"output_type": "stream", "name": name, "text": _text(out.get("text"))}
    if kind == "error":
        tb = out.get("traceback") or []
        return {
            "output_type": "error",
            "ename": _text(out.get("ename"))[:1000],
            "evalue": _text(out.get("evalue")),
            "traceback": [_text(line) for line in tb[:200]] if isinstance(tb, list) else [],
        }
    if kind not in ("display_data", "execute_result"):
        return {
            "output_type": "stream",
            "name": "stdout",
            "text": f"[the grader removed an output of unknown type {_text(kind)[:40]!r}]\n",
        }
    data = out.get("data") if isinstance(out.get("data"), dict) else {}
    kept, removed = {}, []
    for mime, value in data.items():
        if mime == "text/plain":
            kept[mime] = _text(value)
        elif mime in IMAGE_MAGIC and valid_image(mime, value):
            kept[mime] = "".join(value) if isinstance(value, list) else value
        else:
            removed.append(str(mime)[:60])
    if removed:
        note = f"[the grader removed output of type {', '.join(sorted(removed))}: only text and images are shown]"
        kept["text/plain"] = (kept["text/plain"] + "\n" + note) if "text/plain" in kept else note
    clean = {"output_type": kind, "data": kept, "metadata": {}}
    if kind == "execute_result":
        count = out.get("execution_count")
        clean["execution_count"] = count if isinstance(count, int) else None
    return clean


def outputs(outs) -> list[dict]:
    return [output(dict(o)) for o in (outs or []) if isinstance(o, dict)]


def markdown(text: str) -> str:
    """Markdown a student wrote, shown as text: no raw HTML, no script links, no fetched images."""
    text = _text(text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("![", "&#33;[")  # an image would fetch its URL when the page opens
    return _SCHEME.sub(lambda m: f"{m.group(1)} {m.group(2)}:", text)  # a space breaks the link target


def cell(c: dict, *, student_markdown: bool = False) -> dict:
    """Make one cell inert in place: its outputs, and (if a student wrote it) its markdown."""
    if c.get("cell_type") == "code":
        c["outputs"] = outputs(c.get("outputs"))
    elif student_markdown and c.get("cell_type") in ("markdown", "raw"):
        c["source"] = markdown(c.get("source", ""))
        c.pop("attachments", None)
    return c
