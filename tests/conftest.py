"""Test session setup: 8 simulated CPU devices (sharding tests), fp32 matmuls, repo root importable.

Shared by several test files: the `pegasus-jax` subprocess helpers, a small synthetic corpus with its
tokenizer, and one tiny training run on it (`reference`), each made once per session and shared by the
xdist workers.
"""
import fcntl
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA compilation cache per session, made by the first process to load this file and
# inherited by the xdist workers and every subprocess: the resume, launch and multi-process tests compile
# the same tiny programs in process after process. Removed when that first process ends the session.
_OWN_COMPILATION_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_COMPILATION_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="pegasus-jax-xla-cache-")
# Every program, not only those compiling for over a second (JAX's default): a tiny 8-step training
# subprocess took 13.5 s with the default and 11-12 s with this on a warm cache (28-32 s with none).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

from pegasus_jax.flax_settings import configure as configure_flax  # noqa: E402

configure_flax()  # what the CLI main does before building a model


def pytest_collection_modifyitems(items):
    """Files holding a `slow` test first, in their own order, then the rest. `make test` hands whole files
    to the two xdist workers in collection order (--dist loadfile --no-loadscope-reorder): the files that
    take minutes must start at once, not be left for the end of the run while the other worker idles."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: each file's tests keep their order


def pytest_unconfigure(config):
    if _OWN_COMPILATION_CACHE:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


REFERENCE_STEPS = 40
PEAK = 1e9  # a stated per-device peak makes MFU a pure function of FLOPs and step time


def cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "pegasus_jax.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, env=env, **kw)


def cpu_env(devices=1):
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def losses(workdir):
    """step -> loss, the last record of each step winning (a resumed run re-logs replayed steps)."""
    out = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if "loss" in rec:
                out[rec["step"]] = rec["loss"]
    return out


def overrides(corpus, **extra):
    flags = {"data.path": corpus["train"], "data.eval_path": corpus["heldout"], "data.tokenizer": corpus["tokenizer"],
             "train.log_every": 1, **extra}
    return [f"--config.{k}={v}" for k, v in flags.items()]


def reference_flags(corpus):
    return overrides(corpus, **{"train.steps": REFERENCE_STEPS, "train.checkpoint_every": 5,
                                "train.warmup_steps": 5, "train.peak_flops": PEAK})


@pytest.fixture(scope="session")
def audio_only():
    """An MP4 (bytes) with one second of AAC audio and no video stream."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        samples = (0.2 * np.sin(np.arange(16000) * 0.1)).astype(np.float32)
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="flt", layout="mono")
            frame.sample_rate = 16000
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


def made_once(tmp_path_factory, name, make):
    """The folder `make(path)` fills, made once per session: the first xdist worker to ask makes it under a
    lock while the others wait, then all reuse it (the training tests and the task tests, which pytest
    may send to different workers, need the same corpus and trained checkpoint)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above every worker's own
    path, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            make(path)
            done.touch()
    return path


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A small synthetic corpus (64 train + 16 held-out clips) and its tokenizer."""
    def make(root):
        out = cli("data", "synth", "--out", str(root), "--num", "64", "--heldout", "16", "--seed", "0")
        assert out.returncode == 0, out.stderr
        tok = cli("tokenizer", "train", "--input", str(root / "train" / "*.array_record"), "--vocab-size", "512",
                  "--out", str(root / "tok"))
        assert tok.returncode == 0, tok.stderr

    root = made_once(tmp_path_factory, "corpus", make)
    return {"train": str(root / "train" / "*.array_record"), "heldout": str(root / "heldout" / "*.array_record"),
            "tokenizer": str(root / "tok.model")}


@pytest.fixture(scope="session")
def reference(corpus, tmp_path_factory):
    """One uninterrupted tiny training run (REFERENCE_STEPS steps, ~30 s on 2 cores): the training
    tests compare against it, the task and evaluation tests use it as the trained checkpoint."""
    def make(workdir):
        run = cli("train", "--config", "configs/tiny.py", "--workdir", str(workdir), *reference_flags(corpus),
                  env=cpu_env())
        assert run.returncode == 0, run.stderr[-3000:]
        (workdir / "train_stderr.log").write_text(run.stderr)  # what a pod log would hold (test_cli_ux)

    return made_once(tmp_path_factory, "reference", make)


# An OpenAI-compatible chat-completions server on 127.0.0.1 with scripted answers: the judge tests
# (test_judge, test_eval_protocol) talk to it over real HTTP.
MAX_REQUESTS = 200  # the scripted server refuses to serve more: a runaway client fails the test


class ScriptedJudgeServer:
    """`script(messages, attempt) -> str | ("sleep", seconds) | ("status", code)`; attempt counts from 1
    per distinct messages."""

    def __init__(self, script):
        self.script, self.requests, self.auth = script, 0, set()
        self.attempts: dict[str, int] = {}
        lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    outer.requests += 1
                    over = outer.requests > MAX_REQUESTS
                    outer.auth.add(self.headers.get("Authorization"))
                    key = json.dumps(body["messages"], sort_keys=True)
                    outer.attempts[key] = outer.attempts.get(key, 0) + 1
                    attempt = outer.attempts[key]
                action = ("status", 429) if over else outer.script(body["messages"], attempt)
                if isinstance(action, tuple) and action[0] == "sleep":
                    time.sleep(action[1])
                    action = '{"score": 5}'
                if isinstance(action, tuple):  # an error page echoing the auth header, as some proxies do
                    self._send(action[1], f"rejected: {self.headers.get('Authorization')}".encode())
                    return
                reply = {"choices": [{"message": {"role": "assistant", "content": action}}]}
                self._send(200, json.dumps(reply).encode())

            def _send(self, code, payload):
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
