"""The processes of a training run: the device, the data-parallel group (torchrun's or our own single-thread
CPU ranks), and ranks and loader workers that end with the process that started them."""
from __future__ import annotations

import datetime
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from ..errors import LeanfaceError
from ..host import available_cores
from .config import TrainConfig


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    owned: bool = False  # this run created the process group, so it also ends it

    @property
    def main(self) -> bool:
        return self.rank == 0



def setup_distributed(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    owned = not dist.is_initialized()
    if owned:
        # Rank 0 evaluates while the others wait at a barrier: allow more than the default timeout.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=1))
    return Dist(dist.get_rank(), dist.get_world_size(), owned)



def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LeanfaceError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LeanfaceError(f"device {name!r} requested but CUDA is not available")
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device



def resolve_procs(cfg: TrainConfig, device: torch.device) -> int:
    """Processes `train` starts itself: cfg.procs, or for 0 one per core that splits the batch (CPU only).

    1 under torchrun (the launcher made the processes) and on GPU (use torchrun there).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or device.type != "cpu":
        return 1
    if cfg.procs:
        if cfg.batch_size % cfg.procs:
            raise LeanfaceError(f"batch_size {cfg.batch_size} does not split over {cfg.procs} processes")
        return cfg.procs
    # Each rank keeps at least two images: BatchNorm cannot take statistics over one.
    return max(n for n in range(1, min(available_cores(), cfg.batch_size // 2) + 1) if cfg.batch_size % n == 0)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent(*_) -> None:
    """End this process when the one that started it ends (e.g. `kill PID` of `leanface train`, or a sibling
    rank failing): an orphaned rank would go on writing the run folder beside a resumed run, an orphaned
    loader worker holds gigabytes. On Linux the kernel does it (PR_SET_PDEATHSIG); elsewhere a thread polls.
    Outputs are written atomically, so stopping anywhere loses at most the epoch in progress. Also the
    DataLoader's worker_init_fn (hence the ignored argument)."""
    import ctypes
    import signal
    import threading

    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        else:
            if os.getppid() != parent or parent == 1:  # the parent was gone before we asked
                os._exit(1)
            return

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="leanface-parent-watch").start()



def _rank_main(rank: int, world: int, port: int, target: Callable, args: tuple, kwargs: dict) -> None:
    """Entry point of a rank started by `spawn_ranks`: a single-thread process of a gloo group."""
    import cv2

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), LEANFACE_RANK_CHILD="1")  # the parent already printed the summary
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    die_with_parent()
    if rank:
        kwargs = {**kwargs, "progress": False}
    target(*args, **kwargs)


def spawn_ranks(procs: int, out_dir: str, target: Callable, args: tuple, kwargs: dict) -> None:
    """Run `target(*args, **kwargs)` (a module-level function: `train`) in `procs` single-thread ranks on this
    machine and wait for them; a rank that dies stops the others and becomes a one-line error."""
    import torch.multiprocessing as mp

    context = mp.start_processes(_rank_main, args=(procs, _free_port(), target, args, kwargs), nprocs=procs,
                                 join=False, start_method="spawn")
    try:
        while not context.join():
            pass
    except BaseException as exc:
        # Interrupted (Ctrl-C, SIGTERM) or a rank failed: stop the ranks now. Python's exit would otherwise
        # wait for them to finish the whole run; their loader workers follow them (`die_with_parent`).
        for p in context.processes:
            if p.is_alive():
                p.terminate()
        for p in context.processes:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        if isinstance(exc, (mp.ProcessExitedException, mp.ProcessRaisedException)):
            _raise_rank_error(exc, procs, out_dir)
        raise


def _raise_rank_error(exc, procs: int, out_dir: str) -> None:
    """A failed rank as one line: killed (out of memory, `kill -9`), or a user error raised inside it."""
    import torch.multiprocessing as mp

    if isinstance(exc, mp.ProcessExitedException):
        how = f"by {exc.signal_name}" if getattr(exc, "signal_name", None) else f"with status {exc.exit_code}"
        raise LeanfaceError(f"{out_dir}: training process {exc.error_index} of {procs} ended {how}; the others "
                            f"were stopped; --resume continues from the last finished epoch") from None
    last = str(exc).strip().splitlines()[-1]
    if "LeanfaceError: " in last:
        raise LeanfaceError(last.split("LeanfaceError: ", 1)[-1]) from None
