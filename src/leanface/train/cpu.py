"""The CPU fast path of training: where bf16 autocast pays, the two convolution shapes rerouted around
oneDNN's training kernels, and the CPU time a run costs."""
from __future__ import annotations

import os
import time

import torch

from .config import TrainConfig


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AVX-512 BF16 or AMX): where autocast pays."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the fast path on `device`, or None for float32."""
    if not cfg.amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None


def reroute_cpu_convolutions(net: torch.nn.Module, bf16: bool, channels_last: bool) -> dict[str, int]:
    """Route two convolution shapes around oneDNN's CPU training kernels, on this instance's modules only
    (parameters and state dict unchanged); returns how many of each were rerouted.

    - Strided depthwise convolutions run in float32 under bf16 autocast (`bf16`): oneDNN has no fast bf16
      backward for them (~20% of scrfd_500m_kps's bf16 step, 3-15x the float32 time of the same layer,
      while every other layer is faster in bf16; docs/LAB_NOTES.md).
    - With `channels_last`, a 1x1 strided convolution without padding becomes subsampling then a 1x1
      stride-1 convolution, the same arithmetic: PyTorch 2.13's channels_last backward of the strided form
      crashes the process on some CPUs (segfault on an AMD EPYC, e.g. 8 channels at 112 px, the quality
      net's shortcut).
    """
    counts = {"depthwise_float32": 0, "pointwise_subsampled": 0}
    for m in net.modules():
        if not isinstance(m, torch.nn.Conv2d) or m.stride == (1, 1):
            continue
        if bf16 and m.groups == m.in_channels > 1:
            def forward(x, conv=m):
                with torch.autocast("cpu", enabled=False):
                    return torch.nn.Conv2d.forward(conv, x.float())

            m.forward = forward
            counts["depthwise_float32"] += 1
        elif channels_last and m.kernel_size == (1, 1) and m.padding == (0, 0) and m.dilation == (1, 1):
            def forward(x, conv=m):
                sy, sx = conv.stride
                return torch.nn.functional.conv2d(x[:, :, ::sy, ::sx], conv.weight, conv.bias, 1, 0, 1, conv.groups)

            m.forward = forward
            counts["pointwise_subsampled"] += 1
    return counts



def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its live children (the data-loading workers, where a
    teacher may run): what a run costs on a shared machine, whatever else runs beside it. Linux; elsewhere
    this process alone."""
    total = time.process_time()
    try:
        tick = os.sysconf("SC_CLK_TCK")
        children = set()
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                children.update(f.read().split())
        for pid in children:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    except (OSError, ValueError, IndexError):
        pass
    return total
