"""Code figures of the boltzflow sources, read with ``ast`` (nothing is imported).

Prints the number of functions, the median function length (lines of the body without its
docstring), the share of function arguments that carry an annotation (``self`` and ``cls``
excluded) and the public classes without a docstring. Exits with status 1 when the median is
above ``--max-median``, the share below ``--min-annotated``, or a public class is undocumented.

    .venv/bin/python bench/code_metrics.py                  # src/boltzflow
    .venv/bin/python bench/code_metrics.py --list-unannotated
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "src" / "boltzflow"
Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass
class Figures:
    """What one pass over the sources counts."""

    lengths: list[int] = field(default_factory=list)
    n_arguments: int = 0
    annotated: int = 0
    unannotated: list[str] = field(default_factory=list)
    undocumented: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.lengths) if self.lengths else 0.0

    @property
    def annotated_share(self) -> float:
        return self.annotated / self.n_arguments if self.n_arguments else 1.0


def body_length(node: Function) -> int:
    """Lines of ``node``'s body, its docstring left out (0 for a docstring-only body)."""
    body = node.body[1:] if ast.get_docstring(node, clean=False) is not None else node.body
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def arguments(node: Function) -> list[ast.arg]:
    """Every argument of ``node`` but ``self`` and ``cls``."""
    a = node.args
    every = [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, (a.vararg, a.kwarg))]
    return [arg for arg in every if arg.arg not in ("self", "cls")]


def visit(tree: ast.Module, where: str, figures: Figures) -> None:
    """Add the functions and classes of one module to ``figures``."""
    for node in ast.walk(tree):
        if isinstance(node, Function):
            figures.lengths.append(body_length(node))
            for arg in arguments(node):
                figures.n_arguments += 1
                if arg.annotation is not None:
                    figures.annotated += 1
                else:
                    figures.unannotated.append(f"{where}:{arg.lineno} {node.name}({arg.arg})")
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            if ast.get_docstring(node) is None:
                figures.undocumented.append(f"{where}:{node.lineno} {node.name}")


def measure(root: Path) -> Figures:
    """The figures of every ``*.py`` file under ``root``."""
    figures = Figures()
    for path in sorted(root.rglob("*.py")):
        where = str(path.relative_to(root.parent))
        visit(ast.parse(path.read_text(), where), where, figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="package directory")
    parser.add_argument("--max-median", type=float, default=7.0, help="fail above [7]")
    parser.add_argument("--min-annotated", type=float, default=0.95, help="fail below [0.95]")
    parser.add_argument(
        "--list-unannotated", action="store_true", help="print every unannotated argument"
    )
    args = parser.parse_args(argv)
    f = measure(args.root)
    print(f"functions                  {len(f.lengths)}")
    print(f"median function length     {f.median:g} lines (body without docstring)")
    print(f"arguments annotated        {f.annotated_share:.3f} ({f.annotated} of {f.n_arguments})")
    print(f"public classes undocumented {len(f.undocumented)}")
    for name in f.undocumented:
        print(f"  {name}")
    if args.list_unannotated:
        print("unannotated arguments:")
        for name in f.unannotated:
            print(f"  {name}")
    ok = (
        f.median <= args.max_median
        and f.annotated_share >= args.min_annotated
        and not f.undocumented
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
