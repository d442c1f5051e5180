"""Load: wrk's report read into numbers, and a paced client for load during redeploys.

wrk (Debian's package) drives the throughput comparison: it is fast enough not
to be the bottleneck and bounded by its ``-d``. The load during redeploys is a
paced Python client instead: a fixed request rate, each request on a new
connection, so every failure it counts is one a real visitor would have seen
(wrk's closed loop would rather saturate the 2 CPUs and slow the redeploys).
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from dataclasses import dataclass, field

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass
class WrkResult:
    requests_per_s: float
    p99_ms: float
    requests: int
    errors: int          # socket errors and non-2xx/3xx answers


def parse_wrk(output: str) -> WrkResult:
    """The figures of ``wrk --latency``'s report."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\b", output, re.M)
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    if not (rps and p99 and total):
        raise ValueError(f"not a wrk --latency report:\n{output}")
    errors = sum(int(n) for n in re.findall(
        r"(?:connect|read|write|timeout) (\d+)",
        next(iter(re.findall(r"Socket errors:.*", output)), "")))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non2xx.group(1)) if non2xx else 0
    return WrkResult(float(rps.group(1)), float(p99.group(1)) * _UNITS[p99.group(2)],
                     int(total.group(1)), errors)


def wrk_command(url: str, host: str, seconds: int, connections: int = 8) -> list[str]:
    """One wrk thread (the node has 2 CPUs to share with nginx and the app)."""
    return ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
            "-H", f"Host: {host}", url]


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.99 for p99) of non-empty ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered))) - 1))]


@dataclass
class PacedLoad:
    """``rate`` requests per second to ``address``:80 with ``Host: host``, from
    ``threads`` threads, each request on a new connection, until ``stop()``."""

    address: str
    host: str
    path: str = "/bench-marker"
    rate: float = 40.0
    threads: int = 4
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._loop, args=(i,), daemon=True)
                         for i in range(self.threads)]

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=15)

    def _loop(self, index: int) -> None:
        interval = self.threads / self.rate
        due = time.monotonic() + index * interval / self.threads
        while not self._stop.is_set():
            time.sleep(max(0.0, due - time.monotonic()))
            due += interval
            start = time.monotonic()
            conn = http.client.HTTPConnection(self.address, 80, timeout=10)
            try:
                conn.request("GET", self.path, headers={"Host": self.host})
                resp = conn.getresponse()
                resp.read()
                failure = "" if 200 <= resp.status < 300 else f"status {resp.status}"
            except (OSError, http.client.HTTPException) as exc:
                failure = repr(exc)
            finally:
                conn.close()
            with self._lock:
                if failure:
                    self.failures.append(failure)
                else:
                    self.latencies.append((time.monotonic() - start) * 1000)
