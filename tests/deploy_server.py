"""Shared by test_serve.py and test_browser.py: one smoke-size deploy bundle per test session,
and the demo server (`python -m helpers.ops.serve`) started for real in a subprocess on loopback."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
# The translator is the smoke profile's (250 steps, BLEU ~100 on the stand-in): test_decoding_cache
# needs a trained model. The generator gets few steps: the tests check serving, not images.
TRANSLATOR_STEPS, GENERATOR_STEPS = 250, 30


def _env(runs_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CURRICULUM_PROFILE="smoke", CURRICULUM_RUNS_DIR=str(runs_dir),  # no notebook checkpoints
               OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"), PYTHONUNBUFFERED="1")
    return env


def demo_bundle(tmp_path_factory) -> Path:
    """Build the bundle once per session with the documented command (without serving)."""
    base = tmp_path_factory.getbasetemp()
    bundle = base / "deploy-bundle"
    if (bundle / "deploy.json").is_file() and (bundle / "generator.onnx").is_file():
        return bundle
    result = subprocess.run(
        [sys.executable, "-m", "helpers.ops.serve", "--train-smoke", "--no-serve", "--model-dir", str(bundle),
         "--translator-steps", str(TRANSLATOR_STEPS), "--generator-steps", str(GENERATOR_STEPS)],
        cwd=ROOT, env=_env(base / "no-runs"), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"building the bundle failed:\n{result.stdout}\n{result.stderr}"
    return bundle


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerURL(str):
    """The base URL of a running server (a plain string), with its process id and log file."""

    pid: int
    log: Path


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of a process so far (Linux's VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/<pid>/status")


@contextlib.contextmanager
def running_server(model_dir: Path, *extra: str, timeout_s: float = 120.0):
    """Start the demo on 127.0.0.1:<free port>, wait for /health, yield its base URL."""
    port = free_port()
    log = model_dir.parent / f"server-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "helpers.ops.serve", "--model-dir", str(model_dir), "--host",
             "127.0.0.1", "--port", str(port), *extra],
            cwd=ROOT, env=_env(model_dir.parent / "no-runs"), stdout=out, stderr=subprocess.STDOUT)
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.pid, url.log = proc.pid, log
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"no /health answer within {timeout_s} s:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
