"""AOT compilation of the real train step for TPU topologies from this CPU host (libtpu, `tpu` extra).

The 80B compile takes minutes on 2 cores; it is marked `slow` and still runs in `make test`.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def compile_cli(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # one-off TPU programs: storing them costs time and disk
    return subprocess.run([sys.executable, "-m", "pegasus_jax.cli.main", "compile", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1500)


def report_value(stdout, prefix):
    line = next(l for l in stdout.splitlines() if l.startswith(prefix))
    return line


@pytest.mark.slow
def test_80b_compiles_for_v5p_and_fits():
    run = compile_cli("--config", "configs/pegasus_80b.py", "--topology", "v5p-256")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "fits: yes" in run.stdout.splitlines(), run.stdout
    assert "total" in report_value(run.stdout, "per-chip memory:")


def test_oversized_batch_reports_does_not_fit():
    run = compile_cli("--config", "configs/small.py", "--topology", "v5e-16", "--config.train.batch_size=4096",
                      "--config.model.remat_policy=none")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "fits: no" in run.stdout.splitlines(), run.stdout
    total = float(report_value(run.stdout, "per-chip memory:").rsplit("total", 1)[1].split("GiB")[0])
    assert total > 16  # more than a v5e chip's HBM, reported as a figure, not a crash


def test_tiny_fits_and_reports_flops():
    run = compile_cli("--config", "configs/tiny.py", "--topology", "v5p-8", "--config.mesh.data=-1")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "fits: yes" in run.stdout.splitlines()
    assert report_value(run.stdout, "analytic FLOPs per step:")


@pytest.mark.parametrize("args, needle", [
    (["--config", "configs/tiny.py", "--topology", "v9x-8"], "--topology"),
    (["--config", "configs/tiny.py", "--topology", "v5p-6"], "--topology"),
    (["--config", "configs/tiny.py", "--find-topology", "v7"], "--find-topology"),
])
def test_bad_topology_is_one_line(args, needle):
    run = compile_cli(*args)
    assert run.returncode == 2 and needle in run.stderr and "Traceback" not in run.stderr
