"""What the outgoing bitrate of a live session does over time, and what it costs the server.

    python tools/bitrate_probe.py --max-bitrate 4000000,1500000 --rounds 2 --seconds 45 \\
        --out docs/bench-2026-12-01-bitrate-probe.json

For each ``--max-bitrate`` (alternating, ``--rounds`` times) it starts a real ``swaprtc serve``
(embedded engine, that ``SWAPRTC_MAX_BITRATE``) and one real aiortc client streaming the capacity
benchmark's drifting face at 480p30, and every 5 s reports the packets per second the client
receives (aiortc's inbound statistics carry no byte count) and the server process's cores
(``/proc``). The aiortc client answers with REMB like a browser, so the encoder's target moves
between the server's limits as it would in a real session. Exploratory: one session, sequential
runs; the capacity and session_cost suites are the figures of record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swaprtc.benchmarks.capacity import ServerUnderTest, camera_picture  # noqa: E402
from swaprtc.benchmarks.capacity_client import drifting_camera  # noqa: E402
from swaprtc.settings import Settings  # noqa: E402
from swaprtc.workers.memory import cpu_seconds  # noqa: E402

from tests.rtc_client import SwapClient, SyntheticCamera  # noqa: E402


async def probe(max_bitrate: int, seconds: float) -> list[dict[str, Any]]:
    settings = Settings.from_env()
    log_path = Path(tempfile.gettempdir()) / f"bitrate-probe-server-{max_bitrate}.log"
    server = ServerUnderTest(settings, "1", log_path, {"SWAPRTC_MAX_BITRATE": str(max_bitrate)})
    try:
        async with aiohttp.ClientSession() as http:
            await server.wait_ready(http)
        photo = cv2.imread(str(ROOT / "tests" / "data" / "astronaut.png"))
        face = cv2.imread(str(ROOT / "tests" / "data" / "obama.jpg"))
        ok, png = cv2.imencode(".png", photo)
        assert ok
        camera = drifting_camera(SyntheticCamera, camera_picture(face, (640, 480)))
        samples: list[dict[str, Any]] = []
        async with SwapClient(server.base) as client:
            await client.create_session()
            await client.upload_source(png.tobytes(), "image/png")
            await client.connect(camera, timeout=60)
            start = last_t = time.monotonic()
            last_cpu, last_packets = cpu_seconds(server.process.pid) or 0.0, 0
            while time.monotonic() - start < seconds:
                await asyncio.sleep(5)
                stats = await client.pc.getStats()
                packets = sum(s.packetsReceived for s in stats.values() if s.type == "inbound-rtp")
                now, cpu = time.monotonic(), cpu_seconds(server.process.pid) or 0.0
                samples.append(
                    {
                        "t_s": round(now - start, 1),
                        "packets_per_s": round((packets - last_packets) / (now - last_t), 1),
                        "server_cores": round((cpu - last_cpu) / (now - last_t), 3),
                    }
                )
                last_t, last_cpu, last_packets = now, cpu, packets
                print(max_bitrate, samples[-1], flush=True)
        return samples
    finally:
        server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-bitrate", default="4000000,1500000", help="comma separated, bits/s")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--steady-after-s", type=float, default=25.0, help="samples after this are averaged")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    limits = [int(x) for x in args.max_bitrate.split(",")]
    runs: dict[str, list[list[dict[str, Any]]]] = {str(b): [] for b in limits}
    for _ in range(args.rounds):
        for bitrate in limits:
            runs[str(bitrate)].append(await probe(bitrate, args.seconds))
    steady = {
        bitrate: {
            key: round(sum(values) / len(values), 3)
            for key in ("packets_per_s", "server_cores")
            if (values := [s[key] for run in these for s in run if s["t_s"] >= args.steady_after_s])
        }
        for bitrate, these in runs.items()
    }
    report = {
        "what": __doc__.split("\n\n")[0],
        "steady_after_s": args.steady_after_s,
        "steady": steady,
        "runs": runs,
    }
    print(json.dumps(steady, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
