"""One Prometheus text exposition from several workers' scrapes, each sample labelled ``worker``."""

from __future__ import annotations

import re

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def label_sample(line: str, worker: int) -> str:
    match = NAME.match(line)
    if match is None:
        return line
    name, rest = match.group(0), line[match.end() :]
    label = f'worker="{worker}"'
    if rest.startswith("{"):
        inner = rest[1:]
        return f"{name}{{{label}{'' if inner.startswith('}') else ','}{inner}"
    return f"{name}{{{label}}}{rest}"


def family_of(comment: str) -> str | None:
    """The metric family a ``# HELP``/``# TYPE`` line declares."""
    parts = comment.split(None, 3)
    return parts[2] if len(parts) >= 3 and parts[1] in ("HELP", "TYPE") else None


def merge_scrapes(scrapes: dict[int, str]) -> str:
    """Samples of one family must follow its HELP/TYPE lines together, so families are gathered
    across workers (first-seen order) and each HELP/TYPE line is written once."""
    order: list[str] = []
    headers: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for worker, text in sorted(scrapes.items()):
        family = ""
        for line in text.splitlines():
            if not line.strip() or line.startswith("# EOF"):
                continue
            if line.startswith("#"):
                declared = family_of(line)
                if declared is None:
                    continue
                family = declared
                if family not in headers:
                    order.append(family)
                    headers[family], samples[family] = [], []
                if line not in headers[family]:
                    headers[family].append(line)
                continue
            if family not in headers:
                order.append(family)
                headers[family], samples[family] = [], []
            samples[family].append(label_sample(line, worker))
    out: list[str] = []
    for family in order:
        out.extend(headers[family])
        out.extend(samples[family])
    return "\n".join(out) + "\n"
