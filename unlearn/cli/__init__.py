"""``unlearn``: the command line. Parses and dispatches only; the work lives in the library.

One module per command group (``unlearn.cli.run`` holds ``unlearn run``, ``unlearn.cli.rl``
``unlearn rl ...``), each adding its commands to :data:`app` with ``register``.

Heavy libraries (torch, diffusers, ray, mlflow) are imported inside the commands so that
``unlearn --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from unlearn.cli.options import default_config_path  # noqa: F401 (public)

app = typer.Typer(
    help="Make generative models forget: unlearn classes or memorised samples from DDPMs, "
    "score models and VAEs, and choose the forgetting weight λ.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# the groups in the order `unlearn --help` lists them (commands first, then rl and policy)
from unlearn.cli import (  # noqa: E402
    audit,
    bench,
    demo,
    policy,
    pretrain,
    rl,
    run,
    runs,
    submit,
    tune,
    ui,
)
from unlearn.cli import eval as eval_  # noqa: E402 (not the builtin)

for _group in (pretrain, eval_, demo, run, runs, bench, tune, ui, submit, audit, rl, policy):
    _group.register(app)


def main() -> None:
    """Console entry point: configuration and input errors exit with code 2 and one line."""
    from unlearn.config import ConfigError

    try:
        app()
    except ConfigError as e:
        from unlearn.console import err_console

        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
