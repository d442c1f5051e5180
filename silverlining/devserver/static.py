"""Files served before the app, as on a node: ``static/`` at the URL root, then
``writable_root`` (``HOST/`` subdirectory first). GET and HEAD only; anything
else, or a path no file answers, goes to the app."""

from __future__ import annotations

import email.utils
import mimetypes
import posixpath
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote


@dataclass(frozen=True)
class Found:
    """The answer for a request path: a file to send or a redirect."""

    file: Path | None = None
    redirect: str | None = None


def _safe_parts(url_path: str) -> list[str] | None:
    if "\x00" in url_path or not url_path.startswith("/"):
        return None
    parts = [p for p in url_path.split("/") if p]
    if any(p in ("..", ".") or "\\" in p for p in parts):
        return None
    return parts


def find(roots: list[Path], url_path: str, query: str = "") -> Found | None:
    """Look ``url_path`` (decoded) up in each root in turn."""
    parts = _safe_parts(url_path)
    if parts is None:
        return None
    for root in roots:
        candidate = root.joinpath(*parts)
        if candidate.is_file():
            if url_path.endswith("/"):
                continue
            return Found(file=candidate)
        if candidate.is_dir() and (candidate / "index.html").is_file():
            if not url_path.endswith("/"):
                return Found(redirect=quote(url_path) + "/" + (f"?{query}" if query else ""))
            return Found(file=candidate / "index.html")
    return None


def roots_for(app_dir: Path, writable_root: str | None, host: str) -> list[Path]:
    roots = [app_dir / "static"]
    if writable_root:
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = posixpath.basename(host.lower())
        if name and name not in (".", ".."):
            roots.append(Path(writable_root) / name)
        roots.append(Path(writable_root))
    return roots


def file_headers(path: Path, if_modified_since: str | None) -> tuple[int, list[tuple[str, str]]]:
    """Status and headers for sending ``path`` (304 when not modified)."""
    st = path.stat()
    mtime = int(st.st_mtime)
    headers = [("Last-Modified", email.utils.formatdate(mtime, usegmt=True))]
    if if_modified_since:
        try:
            since = email.utils.parsedate_to_datetime(if_modified_since).timestamp()
        except (TypeError, ValueError, IndexError):
            since = None
        if since is not None and mtime <= since:
            return 304, headers
    ctype, encoding = mimetypes.guess_type(path.name)
    ctype = ctype or "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
        ctype += "; charset=utf-8"
    headers += [("Content-Type", ctype), ("Content-Length", str(st.st_size))]
    if encoding:
        headers.append(("Content-Encoding", encoding))
    return 200, headers


def read_chunks(path: Path, size: int = 65536):
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk
