"""Connecting to Ray, for every job that can spread over machines (the architecture search, bulk detection).

address: None or "local" starts a private Ray instance on this machine; "auto" joins the cluster this
machine belongs to (RAY_ADDRESS, or the `ray start` instance found here); "HOST:PORT" joins that head.
"""
from __future__ import annotations

from .errors import LeanfaceError


def require_ray():
    """The ray module, or a one-line error saying how to install it (an extra, not a core dependency)."""
    try:
        import ray
    except ImportError:
        raise LeanfaceError("this needs Ray: pip install 'leanface[search]' (ray[tune])") from None
    return ray


def ray_init(address: str | None, **kwargs) -> bool:
    """Connect to (or start) Ray; True when this call did, so the caller shuts it down."""
    ray = require_ray()

    if ray.is_initialized():
        return False
    try:
        # Workers' own output goes to their log files; the driver shows one progress bar.
        ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False,
                 **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LeanfaceError(f"cannot reach the Ray cluster at {address!r}: {first[:200]}") from None
    return True
