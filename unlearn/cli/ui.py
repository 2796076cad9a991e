"""``unlearn ui``: the MLflow UI on the embedded store.

Registered onto the main app by :func:`register`; mlflow runs in its own process.
"""

from __future__ import annotations

from typing import Annotated

import typer

from unlearn.cli.options import ConfigOpt, SetOpt, load_cli_config


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command("ui")(ui)


def ui(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Start the MLflow UI on the embedded store (WORKDIR/mlflow.db), bound to 127.0.0.1."""
    import subprocess
    import sys

    from unlearn.config import ConfigError
    from unlearn.console import console
    from unlearn.tracking import check_server, tracking_uri

    cfg = load_cli_config(config, set_)
    uri = tracking_uri(cfg)
    if not uri.startswith("sqlite:///"):
        console.print(f"runs are tracked on a server already: {uri}")
        return
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port: {port} is out of range; expected 1..65535")
    check_server(uri)  # the store's folder exists and is writable
    import socket

    with socket.socket() as s:  # a taken port would end mlflow with a multi-line log
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise ConfigError(f"--port: {port} is in use on 127.0.0.1; choose another --port")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        str(cfg.workdir_path / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    console.print(f"MLflow UI: http://127.0.0.1:{port}  (store {uri}; Ctrl-C stops it)")
    proc = subprocess.Popen(cmd)
    try:
        raise typer.Exit(proc.wait())
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=10)
