"""The root ``esr`` command: joins one module per sub-command and maps errors to exit codes.

Exit codes: 0 success, 1 an :class:`~esrcli.errors.EsrError` (one line on stderr, plus a
hint line when there is one) or a batch with failures, 2 a usage error, 130 Ctrl-C or
SIGTERM (``kill``, a job scheduler's stop: handled like Ctrl-C, so unfinished outputs such as a
video's ``.part`` file are removed and the one-line "interrupted" is printed).
``--verbose`` (anywhere on the command line) shows the full traceback instead.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Optional

import typer
from typer.exceptions import TyperException

from esrcli import __version__
from esrcli.cli import console
from esrcli.errors import EsrError

app = typer.Typer(
    name="esr",
    help="Real-world blind image super-resolution (ESRGAN / Real-ESRGAN).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"esr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks and debug detail."),
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """esr: restore and enlarge real photos, synthesise degradations, train and evaluate SR models."""
    console.state.verbose = verbose


def _register() -> None:
    # One explicit list; each module adds its own commands (no import side effects elsewhere).
    from esrcli.cli import degrade, estimate, evaluate, interp, model, niqe, pdm, train, upscale

    for module in (upscale, degrade, estimate, niqe, evaluate, train, pdm, interp, model):
        module.register(app)


_register()


def _sigterm_as_interrupt() -> None:
    """Turn SIGTERM in this process into ``KeyboardInterrupt`` (the clean-up paths of Ctrl-C).

    Child processes that inherit the handler (loader workers) keep SIGTERM's default: they
    exit at once, as before.
    """
    pid = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass


def main(argv: list[str] | None = None) -> int:
    """Run ``esr`` with ``argv`` (default ``sys.argv[1:]``) and return/exit with its exit code."""
    if argv is None:  # the console script, not a caller that owns the process
        _sigterm_as_interrupt()
    args = sys.argv[1:] if argv is None else list(argv)
    verbose = "--verbose" in args or "-v" in args
    console.state.verbose = verbose
    console.state.stopped_cleanly = False
    try:
        rc = app(args=args, prog_name="esr", standalone_mode=False)
        code = rc if isinstance(rc, int) else 0
        if code == 130 and not console.state.stopped_cleanly:  # typer turns Ctrl-C into a silent Exit(130)
            console.error("interrupted")
    except typer.Exit as exc:
        code = exc.exit_code
    except TyperException as exc:  # usage errors (exit 2) and other parser errors
        show = getattr(exc, "show", None)
        if show is not None:
            show(file=sys.stderr)
        else:
            console.error(exc.format_message())
        code = exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        console.error("interrupted")
        code = 130
    except EsrError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        console.error(str(exc), exc.hint)
        code = 1
    except Exception as exc:  # noqa: BLE001 - last resort: never a bare traceback for users
        if verbose:
            raise
        console.error(f"internal error: {type(exc).__name__}: {exc}", "run again with --verbose for the traceback")
        code = 1
    if argv is None:
        sys.exit(code)
    return code
