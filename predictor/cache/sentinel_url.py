"""`redis+sentinel://` URLs (the form Celery and Kombu use), parsed once at start-up."""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote, urlsplit

SENTINEL_SCHEME: Final = "redis+sentinel"


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, str | None]:
    """Sentinels, service name, db and password of a `redis+sentinel://` URL (Kombu's form);
    ValueError when it is not one."""
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    password = unquote(userinfo.partition(":")[2]) if ":" in userinfo else None
    sentinels = []
    for host_port in hosts.split(","):
        host, _, port = host_port.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("each sentinel must be HOST:PORT")
        sentinels.append((host.strip("[]"), int(port)))
    path = [part for part in parts.path.split("/") if part]
    if not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("the path must be /SERVICE_NAME[/DB]")
    return sentinels, path[0], int(path[1]) if len(path) == 2 else 0, password or None
