"""Runs whose process is gone: who owns a RUNNING run, and what its output folder says.

A process killed with SIGKILL (or by the out-of-memory killer, or a lost node) ends nothing:
its MLflow run would stay RUNNING forever and its output folder would look like any other.
So ``unlearn run`` tags its MLflow run with its owner (``unlearn.pid``, ``unlearn.host``, the
process's start time, the output folder) and writes ``INCOMPLETE.json`` into the output
folder first; ``result.json`` is written last, atomically, and then the marker goes.

:func:`reap` (called by :func:`~unlearn.tracking.list_runs`, i.e. ``unlearn runs``) finds
RUNNING runs whose owner was on this host and is gone, sets them KILLED with a
``unlearn.failure`` tag, and marks their output folder ``"status": "killed"``. Runs of other
hosts are left as they are (their processes cannot be asked from here).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

MARKER = "INCOMPLETE.json"
RESULT = "result.json"
PID, HOST, START, OUTPUT = "unlearn.pid", "unlearn.host", "unlearn.pid_start", "unlearn.output"


def _start_ticks(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot ('' where /proc is absent).

    With the pid it names one process: a later process that reuses the pid differs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces
    return fields[19] if len(fields) > 19 else ""


def owner_tags(output: Path | None = None) -> dict[str, str]:
    """MLflow tags naming this process as the owner of a run (and its output folder)."""
    pid = os.getpid()
    tags = {PID: str(pid), HOST: socket.gethostname(), START: _start_ticks(pid)}
    if output is not None:
        tags[OUTPUT] = str(output)
    return tags


def owner_gone(tags: dict[str, str]) -> bool:
    """Whether the process in ``tags`` is known to be gone (False: alive, elsewhere or unknown)."""
    if tags.get(HOST) != socket.gethostname() or not tags.get(PID, "").isdigit():
        return False
    pid = int(tags[PID])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process holds the pid: is it the run's?
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):  # killed, not yet reaped by its parent
        return True
    return bool(tags.get(START)) and _start_ticks(pid) != tags[START]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """``path`` replaced atomically: a reader sees the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def mark_incomplete(out: Path, run_id: str | None) -> None:
    """Say in ``out`` that its run has not finished (the first file a run writes)."""
    _write_json(
        out / MARKER,
        {
            "status": "running",
            "run_id": run_id,
            **owner_tags(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "note": f"incomplete: the run has not finished; {RESULT} is written last, "
            "when it has (this file then goes)",
        },
    )


def write_result(out: Path, result: dict[str, Any]) -> None:
    """``result.json``, atomically, then the incomplete marker goes: the folder is complete."""
    _write_json(out / RESULT, result)
    (out / MARKER).unlink(missing_ok=True)


def mark_ended(out: Path, status: str, message: str = "") -> None:
    """An incomplete folder's marker says how its run ended (failed, killed)."""
    path = out / MARKER
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return
    data.update(status=status, message=message, note=f"incomplete: the run was {status}")
    _write_json(path, data)


def reap(client, runs: list) -> dict[str, str]:
    """Set the RUNNING runs among ``runs`` whose process is gone to KILLED; their new status.

    ``client`` is an ``MlflowClient``; ``runs`` are MLflow ``Run`` objects."""
    killed: dict[str, str] = {}
    for r in runs:
        tags = r.data.tags
        if r.info.status != "RUNNING" or not owner_gone(tags):
            continue
        why = f"process {tags[PID]} on {tags[HOST]} ended without ending the run (killed)"
        client.set_tag(r.info.run_id, "unlearn.failure", why)
        client.set_terminated(r.info.run_id, status="KILLED")
        if tags.get(OUTPUT):
            mark_ended(Path(tags[OUTPUT]), "killed", why)
        killed[r.info.run_id] = "KILLED"
    return killed
