"""Fault injection points for the reliability tests; inert outside them."""

from __future__ import annotations

import errno
import os


def fault_point(name: str) -> None:
    """Fault injection for the reliability tests (``TLREPORT_FAULT=<name>``).

    ``kill:<point>`` SIGKILLs this process at that point, ``int:<point>`` sends
    it SIGINT (as Ctrl-C does), ``term:<point>`` SIGTERM (as ``timeout`` and
    ``kill`` do); ``enospc:<point>`` raises the OSError a full disk raises.
    Unset (always, outside tests), it does nothing.
    """
    want = os.environ.get("TLREPORT_FAULT")
    if not want or want.split(":", 1)[-1] != name:
        return
    if want.startswith(("kill:", "int:", "term:")):
        import signal
        import time

        sig = {"kill": signal.SIGKILL, "int": signal.SIGINT, "term": signal.SIGTERM}[want.split(":", 1)[0]]
        os.kill(os.getpid(), sig)
        time.sleep(1)   # let the signal handler run here, at this point
    if want.startswith("enospc:"):
        raise OSError(errno.ENOSPC, "No space left on device (injected)")
