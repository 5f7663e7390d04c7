"""Measuring runs of processes: CPU time and RSS from /proc while they run,
percentiles, free ports, stopping what a run started. Shared by ``vidpipe
bench`` and ``vidpipe bench --cameras`` (vidpipe.tools.capacity)."""

import os
import statistics
import subprocess
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], pct: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))], 3)


class Sampler:
    """CPU time and peak RSS of some processes, read from /proc while they run."""

    def __init__(self, pids: Dict[str, List[int]]) -> None:
        self.pids = pids
        self.cpu: Dict[int, float] = {}
        self.rss: Dict[int, int] = {}
        self.series: List[Tuple[float, Dict[int, float]]] = []  # (wall time, cpu by pid)
        self.current: Dict[int, int] = {}  # VmRSS, kB
        self.rss_now: List[Tuple[float, Dict[int, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _read(self) -> None:
        for pids in self.pids.values():
            for pid in pids:
                try:
                    with open("/proc/{}/stat".format(pid)) as handle:
                        fields = handle.read().rsplit(")", 1)[1].split()
                    self.cpu[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICK
                    with open("/proc/{}/status".format(pid)) as handle:
                        for line in handle:
                            if line.startswith("VmHWM:"):
                                self.rss[pid] = int(line.split()[1])
                            elif line.startswith("VmRSS:"):
                                self.current[pid] = int(line.split()[1])
                except (OSError, IndexError, ValueError):
                    pass

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self._read()
            self.series.append((time.time(), dict(self.cpu)))
            self.rss_now.append((time.time(), dict(self.current)))

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def rss_series(self, role: str) -> List[Tuple[float, float]]:
        """(wall time, largest current RSS in MB among the role's processes) samples."""
        return [(when, max(rss.get(pid, 0) for pid in self.pids[role]) / 1024.0)
                for when, rss in self.rss_now]

    def at(self, when: float) -> Dict[int, float]:
        """CPU seconds by pid in the sample nearest to wall time ``when``."""
        best = min(self.series, key=lambda item: abs(item[0] - when)) if self.series else None
        return best[1] if best else {}

    def per_role(self, frames: int, start: float, end: float
                 ) -> Tuple[Dict[str, float], Dict[str, float]]:
        """CPU ms per frame between ``start`` and ``end`` (wall clock; start-up and
        imports excluded) and peak RSS per role (ring pages shared between
        processes count in each of them)."""
        first, last = self.at(start), self.at(end)
        cpu, rss = {}, {}
        for role, pids in self.pids.items():
            seconds = [last.get(pid, 0.0) - first.get(pid, 0.0) for pid in pids]
            cpu[role] = round(statistics.mean(seconds) * 1000.0 / max(frames, 1), 3)
            rss[role] = round(max(self.rss.get(pid, 0) for pid in pids) / 1024.0, 1)
        return cpu, rss


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_all(procs: Dict[str, List[subprocess.Popen]]) -> None:
    """Terminate every role of a run, then kill what has not gone in 5 s."""
    for ps in procs.values():
        for proc in ps:
            if proc.poll() is None:
                proc.terminate()
    for ps in procs.values():
        for proc in ps:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
