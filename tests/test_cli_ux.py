"""The first hour of a new user: one-line errors before anything heavy, progress lines in logs, no
libtpu noise on a CPU, --help that shows defaults and the override syntax, installable ranges."""
import ast
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, cli, cpu_env

from pegasus_jax.cli.main import main
from pegasus_jax.progress import Counter, duration, train_line


def one_line_error(run, message):
    """Exit 2 and exactly `error: <message>` on stderr, nothing else."""
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert run.stderr == f"error: {message}\n", run.stderr[-2000:]


def in_process(capsys, *argv):
    """`pegasus-jax ARGV` in this process (a subprocess costs seconds of imports each)."""
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out.out, out.err)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ux")
    (root / "notes.txt").write_text("not a config\n")
    (root / "noget.py").write_text("X = 1\n")
    (root / "broken.py").write_text("def get_config():\n    return {}['missing']\n")
    (root / "video.mp4").write_text("not a video\n")
    (root / "runs.jsonl").write_text('{"N": 1, "D": 2, "C": 12}\n')
    (root / "empty").mkdir()
    return root


def test_config_errors_are_one_line(files, capsys):
    train = ["train", "--workdir", str(files / "w"), "--config"]
    # the case, as a user's shell runs it (a fresh process: nothing else on its stderr)
    one_line_error(cli(*train, str(files / "notes.txt")), f"--config: {files / 'notes.txt'} is not a Python file "
                   "(expected configs/<name>.py defining get_config())")
    config = os.path.join(ROOT, "configs", "tiny.py")
    for argv, message in [
        ([str(files / "noget.py")], f"--config: {files / 'noget.py'} has no get_config()"),
        ([str(files / "broken.py")], f"--config: {files / 'broken.py'}: get_config() failed: KeyError: 'missing'"),
        ([config, "--config.train.stpes=3"],
         "--config.train.stpes: no such config field; did you mean --config.train.steps?"),
        ([config, "--config.model.decoder.widht", "8"],
         "--config.model.decoder.widht: no such config field; did you mean --config.model.decoder.width?"),
        ([config, "--config.train.steps=many"], "--config.train.steps: expected int, got 'many'"),
    ]:
        one_line_error(in_process(capsys, *train, *argv), message)
    assert not (files / "w").exists()  # nothing started


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "-1"], "--temperature -1.0: must be >= 0 (0 = greedy)"),
    (["--temperature", "nan"], "--temperature nan: must be >= 0 (0 = greedy)"),
    (["--top-p", "1.5"], "--top-p 1.5: must be > 0 and <= 1 (1 = off)"),
    (["--top-p", "0"], "--top-p 0.0: must be > 0 and <= 1 (1 = off)"),
    (["--top-k", "-3"], "--top-k -3: must be >= 0 (0 = off)"),
    (["--max-tokens", "0"], "--max-new-tokens 0: must be >= 1"),  # --max-tokens: the older spelling
])
def test_sampling_flags_are_checked_first(flags, message, capsys):
    """Checked before the checkpoint (which does not exist here) or the video are looked at."""
    one_line_error(in_process(capsys, "generate", "--checkpoint", "/nonexistent", "--video", "/nonexistent.mp4", "--prompt", "hi",
                       *flags), message)


def test_python_api_checks_sampling_too():
    from pegasus_jax.errors import UserError
    from pegasus_jax.infer.sampling import DEFAULT_TEMPERATURE, SamplingParams

    assert SamplingParams().temperature == DEFAULT_TEMPERATURE
    with pytest.raises(UserError, match=r"^top_p 2.0: must be > 0 and <= 1"):
        SamplingParams(top_p=2.0)


def test_checkpoint_video_and_runs_errors(files, reference, capsys):
    gist = ["gist", "--video", str(files / "video.mp4"), "--checkpoint"]
    for argv, message in [
        ([*gist, "/nonexistent"], "--checkpoint: /nonexistent does not exist"),
        ([*gist, str(files / "empty")],
         f"--checkpoint: {files / 'empty'} is neither a training workdir nor a checkpoint step folder"),
        (["gist", "--checkpoint", str(reference), "--video", str(files / "missing.mp4")],
         f"--video: no such file {files / 'missing.mp4'}"),
        ([*gist, str(reference)], f"--video: {files / 'video.mp4'} is not a readable video (undecodable)"),
        (["scaling", "fit", str(files / "runs.jsonl"), "--out", str(files / "fit.json")],
         f"{files / 'runs.jsonl'}:1: missing key(s) loss"),
        (["scaling", "fit", str(files / "notes.txt"), "--out", str(files / "fit.json")],
         f"{files / 'notes.txt'}:1: not valid JSON (Expecting value)"),
    ]:
        one_line_error(in_process(capsys, *argv), message)


def test_train_logs_a_progress_line_per_logging_step(reference):
    """The reference run logged every step with stderr a pipe, as under nohup/SLURM/XPK: one line each,
    with the loss metrics.jsonl holds."""
    logged = {r["step"]: r for r in map(json.loads, open(reference / "metrics.jsonl")) if "loss" in r}
    stderr = (reference / "train_stderr.log").read_text()
    pattern = re.compile(r"pegasus_jax\.train: step (\d+)/(\d+) \| loss (\d+\.\d{4}) \| ([\d,]+) tokens/s \| "
                         r"(\d+\.\d{3}) s/step \| MFU (\d+\.\d)% \| ETA (\S+)$")
    lines = [pattern.search(line) for line in stderr.splitlines() if "pegasus_jax.train: step " in line]
    assert lines and all(lines), stderr[-2000:]
    assert [int(m[1]) for m in lines] == sorted(logged)
    for m in lines:
        step, total = int(m[1]), int(m[2])
        assert total == max(logged) and m[3] == f"{logged[step]['loss']:.4f}"
        assert m[5] == f"{logged[step]['step_time_s']:.3f}"
        assert m[7] == duration((total - step) * logged[step]["step_time_s"])
    assert lines[-1][7] == "0s"


def test_progress_formats():
    assert [duration(s) for s in (0.4, 59, 61, 3599, 3661, 90000)] == ["0s", "59s", "1m01s", "59m59s", "1h01m", "25h00m"]
    line = train_line(120, 1800, {"loss": 2.34561, "tokens_per_s": 14210.4, "step_time_s": 0.4123, "mfu": 0.2134})
    assert line == "step 120/1800 | loss 2.3456 | 14,210 tokens/s | 0.412 s/step | MFU 21.3% | ETA 11m33s"


def test_counter_lines_in_a_log(tmp_path):
    """Off a terminal: the first item, the last, and none between when they come faster than every_s."""
    with open(tmp_path / "log", "w") as stream:
        counter = Counter("eval mcq", 5, "questions", every_s=3600, stream=stream)
        for _ in range(5):
            counter.update()
    lines = (tmp_path / "log").read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("eval mcq: 1/5 questions, 0s elapsed, ETA ")
    assert lines[1] == "eval mcq: 5/5 questions, 0s elapsed, ETA 0s"


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="libtpu not installed: nothing would print")
def test_no_libtpu_noise_on_cpu(corpus, reference, tmp_path):
    """JAX_PLATFORMS unset, as a user's shell has it: a CPU command's stderr is empty."""
    env = {k: v for k, v in cpu_env().items() if k != "JAX_PLATFORMS"}
    check = [sys.executable, "-c", "from pegasus_jax.flax_settings import configure; configure(); import jax; "
             "print(jax.devices()[0].platform)"]
    api = subprocess.run(check, cwd=ROOT, env=env, capture_output=True, text=True)
    assert api.returncode == 0 and api.stdout == "cpu\n" and api.stderr == "", api.stderr
    sample = tmp_path / "clip.mp4"
    from data_pipelines.records import shards

    sample.write_bytes(next(iter(shards.read_all(corpus["heldout"]))).video)
    run = cli("gist", "--checkpoint", str(reference), "--video", str(sample), "--max-tokens", "2", env=env)
    assert run.returncode == 0 and run.stderr == "", run.stderr[-3000:]


def test_platform_choice_leaves_a_real_tpu_alone(tmp_path):
    from pegasus_jax.platforms import cpu_only_platforms

    device = tmp_path / "0000:00:04.0"
    device.mkdir()
    (device / "vendor").write_text("0x8086\n")
    expected = "cpu" if importlib.util.find_spec("libtpu") and not os.path.exists("/dev/nvidiactl") else None
    assert cpu_only_platforms({}, str(tmp_path)) == expected
    (device / "vendor").write_text("0x1ae0\n")  # Google's PCI vendor id: a TPU chip
    assert cpu_only_platforms({}, str(tmp_path)) is None
    assert cpu_only_platforms({"JAX_PLATFORMS": "tpu"}, str(tmp_path / "none")) is None


def help_text(capsys, *argv) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_shows_defaults_and_the_override_syntax(capsys):
    top = help_text(capsys)
    assert "one subcommand per module" not in top and "a video-language model" in top
    assert "Run `pegasus-jax COMMAND --help`" in top
    for command in ("train", "compile"):
        text = help_text(capsys, command)
        assert "--config.SECTION.FIELD=VALUE" in text and "--config.train.steps=200" in text, text
    generate = help_text(capsys, "generate")
    assert "--temperature TEMPERATURE sampling temperature, >= 0; 0 = greedy, as in the Python API " \
        "(default: 0.0)" in generate, generate
    assert "--top-k TOP_K sample from the k likeliest tokens; 0 = off (default: 0)" in generate
    assert "(default: 2000)" in help_text(capsys, "data", "synth")


def _setup_keywords() -> dict:
    call = next(node for node in ast.walk(ast.parse(open(os.path.join(ROOT, "setup.py")).read()))
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("install_requires",
                                                                                 "extras_require", "python_requires")}


def test_install_requires_are_ranges_the_lock_satisfies():
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    setup = _setup_keywords()
    assert SpecifierSet(setup["python_requires"]).contains("3.12")
    lock = {}
    for line in open(os.path.join(ROOT, "requirements.lock")):
        if line.strip() and not line.startswith("#"):
            name, version = line.strip().split("==")
            lock[name.lower().replace("_", "-")] = version
    assert "pegasus-jax" not in lock
    extras = [r for group in setup["extras_require"].values() for r in group]
    for text in setup["install_requires"] + extras:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        if name != "libtpu":  # libtpu must match jaxlib exactly: jax's own tpu extra pins it too
            assert not any(s.operator == "==" for s in req.specifier), text
        assert name in lock and req.specifier.contains(lock[name], prereleases=True), (text, lock.get(name))
    makefile = open(os.path.join(ROOT, "Makefile")).read()
    assert makefile.count("-c $(LOCK)") >= 3 and "LOCK := requirements.lock" in makefile
    assert re.search(r"^lock:", makefile, re.M) and "pip freeze --exclude-editable" in makefile
