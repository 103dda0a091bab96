"""Run the ``boltzflow`` CLI in-process for tests."""

from __future__ import annotations

from boltzflow.cli import main


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``boltzflow ARGS``."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def one_and_two_ranks(tmp_path, model: str, dataset, config: dict, steps: int
                      ) -> tuple[dict, dict]:
    """Train ``config`` for ``steps`` steps in one process and under ``torchrun`` with two
    ranks (subprocesses, one thread each); the two checkpoints' model states."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from boltzflow.training import load_checkpoint

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["-m", "boltzflow", "train", "--model", model, "--dataset", str(dataset),
            "--config", str(tmp_path / "config.yaml"), "--steps", str(steps), "--no-progress",
            "--out"]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    for cmd in ([sys.executable, *args, str(tmp_path / "one")],
                [torchrun, "--nproc-per-node", "2", *args, str(tmp_path / "two")]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return (load_checkpoint(tmp_path / "one" / "checkpoint.pt")["model"],
            load_checkpoint(tmp_path / "two" / "checkpoint.pt")["model"])
