"""wrk, the HTTP load generator the benchmarks drive, and the Lua script they give it."""

import json
import os
import shutil
import subprocess
import sys

# wrk's script. Each request gets the next number n (start, start + 1, …; one
# wrk thread), written into the path and body where they say @N@; @C@ is a
# client id (client_base + n mod clients) and @B@ a flag that flips on every
# pass over the clients. The script counts the numbers it handed out, so the
# run knows exactly which deliveries its callbacks were about.
WRK_SCRIPT = r"""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  method, path, body, content_type, ok_pattern, cookie = args[1], args[2], args[3], args[4], args[5], args[6]
  start, client_base, clients = tonumber(args[7]), tonumber(args[8]), tonumber(args[9])
  ok_status = tonumber(args[11])
  paths = {}
  if args[10] ~= "" then
    for line in io.lines(args[10]) do table.insert(paths, line) end
  end
  counter, bad_status, bad_body, first_bad = 0, 0, 0, ""
  headers = {}
  if content_type ~= "" then
    headers["Content-Type"] = content_type
    headers["Accept"] = content_type
  end
  if cookie ~= "" then headers["Cookie"] = cookie end
end

local function fill(text, n)
  local client = client_base + (n % clients)
  local flag = (math.floor(n / clients) % 2 == 0) and "false" or "true"
  text = string.gsub(text, "@N@", tostring(n))
  text = string.gsub(text, "@C@", tostring(client))
  return (string.gsub(text, "@B@", flag))
end

function request()
  local n = start + counter
  counter = counter + 1
  local payload = nil
  if body ~= "" then payload = fill(body, n) end
  local target = path
  if #paths > 0 then target = paths[(n % #paths) + 1] end
  return wrk.format(method, fill(target, n), headers, payload)
end

function response(status, headers, body)
  if status ~= ok_status then
    bad_status = bad_status + 1
  elseif not string.find(body, ok_pattern) then
    bad_body = bad_body + 1
  else
    return
  end
  if first_bad == "" then
    first_bad = status .. " " .. string.sub(string.gsub(body, "%s+", " "), 1, 300)
  end
end

function done(summary, latency, requests)
  local handed, bad_status, bad_body, sample = 0, 0, 0, ""
  for _, thread in ipairs(threads) do
    handed = handed + thread:get("counter")
    bad_status = bad_status + thread:get("bad_status")
    bad_body = bad_body + thread:get("bad_body")
    if sample == "" then sample = thread:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"handed":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,'
      .. '"timeout":%d,"bad_status":%d,"bad_body":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,'
      .. '"max_us":%d}\n',
    summary.requests, handed, summary.duration, e.connect, e.read, e.write, e.timeout,
    bad_status, bad_body, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max))
  if sample ~= "" then io.write("SAMPLE " .. sample .. "\n") end
end
"""


def find_wrk() -> str:
    wrk = shutil.which("wrk")
    apt_get = shutil.which("apt-get")
    if wrk is None and apt_get:
        print("wrk not found; installing Debian's wrk package", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run([apt_get, "update", "-qq"], check=True, env=env)
        subprocess.run([apt_get, "install", "-y", "-qq", "wrk"], check=True, env=env)
        wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    return wrk


def run_wrk(
    wrk: str,
    base: str,
    spec: dict,
    *,
    seconds: int,
    connections: int,
    start: int,
    workdir: str,
    client_base: int = 0,
    clients: int = 1,
) -> tuple[dict, str]:
    """One wrk run (one thread) of WRK_SCRIPT: its figures, and the first bad answer or "".

    spec holds method, path and body (templates, see WRK_SCRIPT), media_type, ok (a Lua
    pattern that a good answer's body holds) and optionally cookie, status (the good
    answer's, 200 unless told) and paths_file (one path per line, taken in turn).
    """
    script = os.path.join(workdir, "load.lua")
    with open(script, "w") as file:
        file.write(WRK_SCRIPT)
    completed = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "2s",
            "-s",
            script,
            base,
            "--",
            spec["method"],
            spec["path"],
            spec["body"],
            spec["media_type"],
            spec["ok"],
            spec.get("cookie", ""),
            str(start),
            str(client_base),
            str(clients),
            spec.get("paths_file", ""),
            str(spec.get("status", 200)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 60,
    )
    lines = completed.stdout.splitlines()
    found = [line[6:] for line in lines if line.startswith("BENCH ")]
    if completed.returncode != 0 or not found:
        raise SystemExit(f"wrk failed ({completed.returncode}):\n{completed.stderr}")
    sample = next((line[7:] for line in lines if line.startswith("SAMPLE ")), "")
    return json.loads(found[0]), sample


def errors(figures: dict) -> int:
    """Failed requests of a run: socket errors, timeouts, and answers not 200 or not good."""
    return sum(
        figures[key] for key in ("connect", "read", "write", "timeout", "bad_status", "bad_body")
    )


def summary(figures: dict) -> dict:
    """A run's throughput, latency percentiles in milliseconds, and errors."""
    seconds = figures["duration_us"] / 1e6
    return {
        "requests": figures["requests"],
        "seconds": seconds,
        "rps": figures["requests"] / seconds,
        "p50_ms": figures["p50_us"] / 1000,
        "p95_ms": figures["p95_us"] / 1000,
        "p99_ms": figures["p99_us"] / 1000,
        "max_ms": figures["max_us"] / 1000,
        "errors": errors(figures),
    }
