"""Redis URLs: checked for their form, and shown without their password."""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from predictor.cache.sentinel_url import SENTINEL_SCHEME, parse_sentinel_url

REDIS_URL_SCHEMES: Final = ("redis", "rediss")
_MASK: Final = "***"


def masked_url(url: str) -> str:
    """The URL with any password (userinfo or `?password=`) replaced by `***`, for logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{_MASK}@{hostport}"
    query = [(k, _MASK if k == "password" else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))


def check_redis_url(url: str) -> None:
    """ValueError for a malformed Redis URL, naming it without its password."""
    if url.startswith(f"{SENTINEL_SCHEME}://"):
        try:
            parse_sentinel_url(url)
        except ValueError as e:  # its messages never quote the URL
            raise ValueError(f"{e}, got {masked_url(url)}") from None
        return
    try:
        parts = urlsplit(url)
        hostname, _ = parts.hostname, parts.port  # .port raises ValueError when malformed
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme not in REDIS_URL_SCHEMES or not hostname:
        raise ValueError(
            f"must be redis://HOST[:PORT][/DB], rediss://... or "
            f"redis+sentinel://HOST:PORT[,HOST:PORT]/SERVICE[/DB], got {masked_url(url)}"
        )
