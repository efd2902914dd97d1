"""wrk, the HTTP load generator of `make bench`: Lua scripts, pinning, and a JSON summary out of its `done()` hook."""

import json
import os
import shutil
import subprocess
from pathlib import Path

INSTALL_HINT = "wrk is missing: install it with `apt-get install -y wrk` (Debian package), then rerun `make bench`"

# Every script ends with this: one machine-readable line with requests, duration, percentiles and errors.
_DONE = r"""
threads = threads or {}
function done(summary, latency, requests)
  local e = summary.errors
  local retries = 0
  for _, t in ipairs(threads) do retries = retries + (tonumber(t:get("retries")) or 0) end
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"mean_us":%.1f,' ..
    '"status_errors":%d,"socket_errors":%d,"retries":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, e.status, e.connect + e.read + e.write + e.timeout, retries))
end
"""


def lua_str(s: str) -> str:
    """A Lua string literal."""
    return json.dumps(s)  # JSON string escapes are valid Lua escapes for the ASCII we send


def get_script(headers: dict[str, str]) -> str:
    lines = [f"wrk.headers[{lua_str(k)}] = {lua_str(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n" + _DONE


def post_script(body: str, headers: dict[str, str]) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_str(body)}",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[{lua_str(k)}] = {lua_str(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n" + _DONE


def ingest_script(jobs_per_thread: list[list[tuple[str, int]]], token: str, *, epochs: int,
                  retry_every: int) -> str:
    """One wrk thread (one connection) per fake worker, posting its jobs' epochs in order.

    Every `retry_every`-th request repeats the previous post verbatim: an idempotent retry (same job, attempt and
    epoch). After `epochs` epochs a worker moves to its next job (and after its last, starts over: a re-trained
    epoch replaces its row)."""
    per = ", ".join(lua_str(",".join(f"{j}:{a}" for j, a in jobs)) for jobs in jobs_per_thread)
    return f"""
local JOBS = {{ {per} }}
local EPOCHS, RETRY_EVERY = {epochs}, {retry_every}
local headers = {{["Content-Type"] = "application/json", ["Authorization"] = {lua_str("Bearer " + token)}}}
threads = {{}}
local n_threads = 0

function setup(thread)
  n_threads = n_threads + 1
  thread:set("jobs", JOBS[n_threads])
  table.insert(threads, thread)
end

function init(args)
  list = {{}}
  for item in string.gmatch(jobs, "[^,]+") do
    local id, att = string.match(item, "([^:]+):(%d+)")
    table.insert(list, {{id, att}})
  end
  n, epoch, ji, last, retries = 0, 0, 1, nil, 0
end

function request()
  n = n + 1
  if last ~= nil and n % RETRY_EVERY == 0 then
    retries = retries + 1
    return last
  end
  epoch = epoch + 1
  if epoch > EPOCHS then
    epoch = 1
    ji = ji % #list + 1
  end
  local j = list[ji]
  local body = string.format(
    '{{"attempt":%s,"epoch":%d,"metrics":{{"train_loss":%.6f,"train_accuracy":%.6f,"val_loss":%.6f,' ..
    '"val_accuracy":%.6f,"learning_rate":0.001,"images_per_second":%.2f,"seconds":%.3f}}}}',
    j[2], epoch, 2.0 / epoch, 1 - 1 / (epoch + 1), 2.2 / epoch, 1 - 1.2 / (epoch + 1), 250 + epoch % 7, 4.25)
  last = wrk.format("POST", "/internal/jobs/" .. j[1] .. "/metrics", headers, body)
  return last
end
""" + _DONE


def find_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(INSTALL_HINT)
    return path


def pin_prefix(cpu: int) -> list[str]:
    """`taskset -c cpu` when there is such a CPU and taskset exists (the load generator gets its own core)."""
    if shutil.which("taskset") and cpu < (os.cpu_count() or 1) and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu)]
    return []


def run(url: str, script: str, workdir: Path, *, connections: int, threads: int, seconds: float,
        cpu: int = 1) -> dict:
    """Run wrk for `seconds` and return its summary: req/s, p50/p90/p99 in ms, errors."""
    path = workdir / f"wrk-{abs(hash(script)) % 10**8}.lua"
    path.write_text(script)
    cmd = [*pin_prefix(cpu), find_wrk(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           "--timeout", "10s", "-s", str(path), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    secs = raw["duration_us"] / 1e6
    return {"req_per_s": raw["requests"] / secs, "requests": raw["requests"], "seconds": secs,
            "p50_ms": raw["p50_us"] / 1e3, "p90_ms": raw["p90_us"] / 1e3, "p99_ms": raw["p99_us"] / 1e3,
            "mean_ms": raw["mean_us"] / 1e3, "non_2xx": raw["status_errors"], "socket_errors": raw["socket_errors"],
            "retries": raw["retries"], "connections": connections}
