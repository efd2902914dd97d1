"""The upload line of `make bench`: a large image archive, the plain-copy and plain-decode baselines, RSS probes."""

import contextlib
import io
import os
import random
import shutil
import threading
import time
import zipfile
from pathlib import Path

MiB = 1024**2
CLASSES = 10
IMAGE_SIZE = 256
DISTINCT = 240  # distinct images, repeated under other names: decoding cost is per image, not per distinct image


def _image(rng: random.Random, np_rng, size: int) -> bytes:
    """A photo-like JPEG: a smooth random colour field plus grain (about 40 KB at 256 px, quality 90)."""
    import numpy as np
    from PIL import Image

    coarse = np_rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.int16)
    grain = np_rng.normal(0, 18, size=(size, size, 3))
    img = Image.fromarray(np.clip(field + grain, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_archive(path: Path, target_bytes: int, seed: int = 0) -> dict:
    """A flat class/image.jpg zip of about target_bytes (members stored: JPEGs do not compress)."""
    import numpy as np

    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    pool = [_image(rng, np_rng, IMAGE_SIZE) for _ in range(DISTINCT)]
    total, n = 0, 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        while total < target_bytes:
            data = pool[n % DISTINCT]
            zf.writestr(f"class_{n % CLASSES:02d}/img_{n:06d}.jpg", data)
            total += len(data)
            n += 1
    return {"images": n, "bytes": path.stat().st_size, "image_px": IMAGE_SIZE,
            "mean_image_bytes": total / n, "classes": CLASSES}


def copy_seconds(src: Path, dst: Path) -> float:
    """A plain file copy of src to dst, fsynced (the service fsyncs the archive before its 201)."""
    t0 = time.perf_counter()
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - t0
    dst.unlink()
    return elapsed


def decode_rate(path: Path, limit: int) -> dict:
    """Images per second for a plain loop that reads members from the zip and fully decodes them with Pillow."""
    from PIL import Image

    with zipfile.ZipFile(path) as zf:
        names = [i.filename for i in zf.infolist() if not i.is_dir()][:limit]
        t0, c0 = time.perf_counter(), time.process_time()
        for name in names:
            with Image.open(io.BytesIO(zf.read(name))) as im:
                im.load()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"images": len(names), "seconds": elapsed, "cpu_seconds": cpu, "images_per_s": len(names) / elapsed,
            "images_per_cpu_s": len(names) / cpu}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (all their threads), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


def _status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def uvicorn_workers(supervisor_pid: int) -> list[int]:
    """The worker processes of a `uvicorn --workers N` supervisor (multiprocessing spawn children)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != supervisor_pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if b"spawn_main" in f.read():
                    pids.append(int(entry))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return sorted(pids)


class RssProbe:
    """Peak RSS growth of some processes over a window: VmHWM reset at the start (clear_refs 5) where the kernel
    lets us, and VmRSS sampled every 20 ms as well; the larger of the two peaks counts."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.start = {p: _status(p)["VmRSS"] for p in pids}
        self.peak = dict(self.start)
        self.hwm_reset = True
        for p in pids:
            try:
                with open(f"/proc/{p}/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                self.hwm_reset = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for p in self.pids:
                with contextlib.suppress(FileNotFoundError, ProcessLookupError, KeyError):
                    self.peak[p] = max(self.peak[p], _status(p)["VmRSS"])

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        growth = {}
        for p in self.pids:
            peak = self.peak[p]
            if self.hwm_reset:
                peak = max(peak, _status(p)["VmHWM"])
            growth[p] = peak - self.start[p]
        worst = max(growth, key=growth.get)
        return {"growth_bytes": growth[worst], "start_rss_bytes": self.start[worst],
                "peak_rss_bytes": self.start[worst] + growth[worst], "per_process_growth_bytes": growth,
                "hwm_reset": self.hwm_reset}
