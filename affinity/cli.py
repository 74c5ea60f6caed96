"""The ``affinity`` command line: a click group whose commands load on first use.

Each command lives in ``affinity/commands/<name>.py`` as a click command called ``command``;
this module only knows their names and one-line help, so ``affinity --help`` imports
neither torch nor optuna. Any ``AffinityError`` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from affinity import __version__

# name -> (module, short help). The short help is repeated here so --help stays instant.
COMMANDS: dict[str, tuple[str, str]] = {
    "search": ("affinity.commands.search", "Run an Optuna study over token-mixer designs."),
    "leaderboard": ("affinity.commands.leaderboard", "Rebuild a study's leaderboard from storage."),
    "report": ("affinity.commands.report", "Write a study's HTML report with its plots."),
    "proxies": ("affinity.commands.proxies", "Rank zero-cost proxies by how they order a study's designs."),
    "profile": ("affinity.commands.profile", "Params, FLOPs, latency and per-stage cost of a model."),
    "models": ("affinity.commands.models", "List registered models with their published figures."),
    "train": ("affinity.commands.train", "Train a model on a dataset and write its metrics."),
    "show": ("affinity.commands.show", "Draw the affinities (receptive fields, learned weights)."),
    "affinities": ("affinity.commands.affinities", "List registered affinities and their papers."),
    "export": ("affinity.commands.export", "Export a model to ONNX or TorchScript and check it."),
    "benchmark": ("affinity.commands.benchmark", "img/s, memory and GEMM fraction of models (vs timm)."),
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (module, _) in COMMANDS.items() if _module_exists(module)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS or not _module_exists(COMMANDS[cmd_name][0]):
            return None
        return _load(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_exists(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _load(name: str) -> click.Command:
    command = importlib.import_module(COMMANDS[name][0]).command
    assert isinstance(command, click.Command)
    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="affinity")
def cli() -> None:
    """affinity: every token mixer as one context aggregation, Y = Concat_m((α·A_m(X) + β·A_m)·V_m)·W + X.

    Profile published backbones rebuilt from affinities, search token-mixer designs with
    Optuna (accuracy vs FLOPs), and draw the affinities themselves.
    FLOPs everywhere are fvcore's: one multiply-add counts as one FLOP.
    """


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: AffinityError or a usage error -> one line and exit 2; Ctrl-C -> exit 130."""
    from affinity.errors import AffinityError

    try:
        return cli.main(args=argv, prog_name="affinity", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("affinity: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        # one line, as for any bad input: click's own shows usage, a hint and a blank line
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "affinity"
        hint = f" (see {where} --help)" if isinstance(exc, click.UsageError) else ""
        message = _printable(" ".join(exc.format_message().split()))
        click.echo(f"{where}: error: {message}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except AffinityError as exc:
        click.echo(f"affinity: error: {_printable(str(exc))}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("affinity: interrupted", err=True)
        sys.exit(130)
    except (MemoryError, RuntimeError) as exc:
        # sizes a user gave (widths, ratios, image or batch sizes) that no memory can hold;
        # any other RuntimeError is a bug and keeps its traceback
        if not isinstance(exc, MemoryError) and not _out_of_memory(exc):
            raise
        click.echo(
            f"affinity: error: out of memory ({_printable(str(exc).splitlines()[0][:200])}); "
            "allowed: smaller widths, ratios, image or batch sizes",
            err=True,
        )
        sys.exit(2)


def _out_of_memory(exc: BaseException) -> bool:
    """torch's failed allocations: ``OutOfMemoryError`` (CUDA) or the CPU allocator's error."""
    return type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(exc)


def _printable(message: str) -> str:
    """``message`` with the control characters a file name or value carried into it escaped
    (``\\r`` would overwrite the line, an escape sequence would drive the terminal); line
    breaks the message itself makes are kept."""
    return "".join(
        c if c == "\n" or c.isprintable() else c.encode("unicode_escape").decode() for c in message
    )


if __name__ == "__main__":
    main()
