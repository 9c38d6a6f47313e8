"""HTTP download with resume, retries with backoff, mirror fallback and a digest check.

Bytes go to ``<dest>.part``; a retry resumes it with a Range request (a server answering 200
instead of 206 restarts it from zero). Only a file whose SHA-256 (and size, when known) matches is
renamed into place, atomically; a mismatching file is deleted.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from swaprtc.errors import ModelError
from swaprtc.models.integrity import sha256_file

log = logging.getLogger(__name__)
CHUNK = 1 << 16
USER_AGENT = "swaprtc-model-manager"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)?/(\d+|\*)")


class _Retryable(Exception):
    """A transient failure (connection dropped, 5xx, 429): try the same URL again."""


class _Fatal(Exception):
    """This URL will not work (404, bad digest): go to the next mirror."""


@dataclass(frozen=True)
class DownloadPolicy:
    retries: int = 4  # attempts per URL
    backoff_s: float = 0.5  # first wait; doubles each retry
    max_backoff_s: float = 30.0
    timeout_s: float = 30.0  # socket timeout for connect and each read
    progress: bool = True


def download(
    urls: Sequence[str],
    dest: Path,
    *,
    sha256: str | None,
    size: int | None = None,
    policy: DownloadPolicy = DownloadPolicy(),
    label: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Fetch ``dest`` from the first URL that yields the right bytes. ``sha256`` None means the
    caller verifies (e.g. an archive without a published digest); ``size`` is checked when given."""
    part = dest.with_name(dest.name + ".part")
    errors: dict[str, str] = {}  # last failure per URL
    for url in urls:
        delay = policy.backoff_s
        for attempt in range(1, policy.retries + 1):
            try:
                resumed = _fetch_once(url, part, size=size, policy=policy, label=label or dest.name)
                _check(part, sha256=sha256, size=size, resumed=resumed)
                os.replace(part, dest)
                return dest
            except _Retryable as exc:
                errors[url] = f"{exc} (after {attempt} attempt{'s' if attempt > 1 else ''})"
                log.warning(
                    "download of %s from %s failed (attempt %d/%d): %s",
                    dest.name,
                    url,
                    attempt,
                    policy.retries,
                    exc,
                )
                if attempt < policy.retries:
                    sleep(delay)
                    delay = min(delay * 2, policy.max_backoff_s)
            except _Fatal as exc:
                errors[url] = str(exc)
                log.warning("download of %s from %s failed: %s", dest.name, url, exc)
                break
    detail = "; ".join(f"{url}: {why}" for url, why in errors.items()) or "no URL given"
    raise ModelError(f"could not download {dest.name}: {detail}")


def _fetch_once(url: str, part: Path, *, size: int | None, policy: DownloadPolicy, label: str) -> bool:
    """Fetch into ``part``; True when the result includes bytes kept from an earlier attempt."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have >= size:
        if have == size:
            return True  # complete from an earlier attempt: let the digest decide
        part.unlink()
        have = 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=policy.timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            part.unlink()  # our partial file does not fit the remote one: start over
            raise _Retryable("range not satisfiable; restarting") from exc
        if exc.code in (408, 425, 429) or exc.code >= 500:
            raise _Retryable(f"HTTP {exc.code}") from exc
        raise _Fatal(f"HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Retryable(str(getattr(exc, "reason", exc))) from exc
    with response:
        mode = "wb"
        if have and response.status == 206:
            start = _range_start(response.headers.get("Content-Range", ""))
            if start != have:
                part.unlink()
                raise _Retryable(f"server resumed at byte {start}, expected {have}; restarting")
            mode = "ab"
        elif have:
            log.info("%s ignored the Range request; restarting %s from zero", url, label)
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else size
        # Imported here: loading models that are already present (the GPU benchmark on a bare
        # device image) must not need the progress bar package.
        from tqdm import tqdm

        try:
            with (
                open(part, mode) as out,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=label,
                    disable=not policy.progress,
                    leave=False,
                ) as bar,
            ):
                while block := response.read(CHUNK):
                    out.write(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as exc:
            # IncompleteRead, reset, timeout: the bytes so far stay in .part for the next try.
            raise _Retryable(f"connection lost after {part.stat().st_size} bytes: {exc!r}") from exc
    got = part.stat().st_size
    if total is not None and length and got != total:
        raise _Retryable(f"short body: {got} of {total} bytes")
    return mode == "ab"


def _range_start(header: str) -> int | None:
    match = _CONTENT_RANGE.match(header.strip())
    return int(match.group(1)) if match else None


def _check(part: Path, *, sha256: str | None, size: int | None, resumed: bool) -> None:
    # A bad file built on bytes kept from an earlier attempt (a stale .part, a changed mirror)
    # earns one clean retry from zero; a bad fresh download means this URL serves the wrong bytes.
    failure = _Retryable if resumed else _Fatal
    got_size = part.stat().st_size
    if size is not None and got_size != size:
        part.unlink()
        raise failure(f"size {got_size} bytes, expected {size}; file deleted")
    if sha256 is None:
        return
    got = sha256_file(part)
    if got != sha256:
        part.unlink()
        raise failure(f"SHA-256 {got} does not match the expected {sha256}; file deleted")
