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
