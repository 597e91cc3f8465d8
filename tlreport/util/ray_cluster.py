"""Joining or starting a Ray cluster, shared by the Ray extraction runner and the Ray experiment grid."""

from __future__ import annotations

import logging
import os
from typing import Any

from tlreport.errors import UserError
from tlreport.util.text import first_line

INSTALL_HINT = "features.runner = 'ray' needs Ray: pip install -e '.[ray]' (or pip install 'ray>=2.9')"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return ray


def connect(address: str) -> bool:
    """Join the cluster at ``address`` (or ``$RAY_ADDRESS``), or start one on this machine.

    Returns whether this call connected (and so should disconnect when done);
    an already initialised Ray (a caller's own cluster) is used as it is.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS", "")
    if address:
        check_reachable(address)
    try:
        # warnings only: Ray's "Started a local Ray instance" would interleave with the build's lines
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise UserError(f"cannot start or reach {where}: {first_line(e, 200)}") from None
    return True


#: seconds to wait for a cluster's head to accept a connection (ray.init itself retries for minutes)
REACH_TIMEOUT_S = 5.0


def check_reachable(address: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """One line when nothing accepts connections at ``address`` (``host:port`` or ``ray://host:port``):
    Ray would retry for minutes, printing its own logs; ``auto`` and other forms are left to Ray."""
    import socket

    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        why = "no answer" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        port_is = "its Ray client server" if address.startswith("ray://") else "its head's GCS"
        raise UserError(f"cannot reach the Ray cluster at {address}: {why} (is the cluster running, and is "
                        f"the port {port_is}?)") from None


def task_error(e: Exception, what: str) -> UserError | None:
    """One line for a failed Ray task, or ``None`` for a bug in the task's own code (re-raise it).

    A worker's own UserError comes back as the task error's ``cause`` -- or, raised in an actor's
    constructor, only as the text of the ``ActorDiedError``, which ends with the original exception's
    last line.  A worker that died (killed, out of memory) is one line too.
    """
    import ray

    cause = getattr(e, "cause", None)
    if isinstance(cause, UserError):
        return UserError(str(cause))
    prefix = f"{UserError.__module__}.{UserError.__qualname__}: "
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(prefix):
            return UserError(ln[len(prefix):])
    if isinstance(e, ray.exceptions.RayTaskError):
        return None
    return UserError(f"a Ray worker died on {what}: {(lines[0] if lines else type(e).__name__)[:200]}")
