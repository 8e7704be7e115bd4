"""Where and how a run computes: the device, bfloat16 autocast, channels-last, compile, the fused optimiser."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch

from ..config import RuntimeConfig
from ..errors import UserError


def cuda_report() -> str:
    """What torch.cuda says on this node when it has no usable GPU: its own error, the device count and
    CUDA_VISIBLE_DEVICES (a GPU study's trial names them in its one error line)."""
    try:
        torch.cuda.init()
        reason = "torch.cuda initialised, but is_available() is False"
    except Exception as exc:  # torch's errors for a missing driver, a CPU build, a driver too old
        text = str(exc).strip()
        reason = text.splitlines()[0].split(". ")[0][:120] if text else type(exc).__name__  # its first sentence
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return (
        f"torch.cuda: {reason}; device_count {torch.cuda.device_count()}; torch built with CUDA {torch.version.cuda or 'none'}; "
        f"CUDA_VISIBLE_DEVICES {'unset' if visible is None else repr(visible)}"
    )


@dataclass
class Runtime:
    device: torch.device
    amp: bool
    channels_last: bool
    compile: bool = False
    fused: bool = False  # the optimiser's fused kernel

    @classmethod
    def resolve(cls, cfg: RuntimeConfig) -> "Runtime":
        has_cuda = torch.cuda.is_available()
        if cfg.device == "cuda" and not has_cuda:
            raise UserError(f"runtime.device: cuda requested but no GPU is visible on node {socket.gethostname()} ({cuda_report()})")
        device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and has_cuda) else "cpu")
        on_gpu = device.type == "cuda"
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        bf16 = on_gpu and torch.cuda.is_bf16_supported()
        if cfg.amp == "on" and on_gpu and not bf16:
            raise UserError("runtime.amp: on needs a GPU with bfloat16 support; use auto or off")
        amp = cfg.amp == "on" or (cfg.amp == "auto" and bf16)
        fused = cfg.fused_optimizer == "on" or (cfg.fused_optimizer == "auto" and on_gpu)
        return cls(device, amp, cfg.channels_last != "off", cfg.compile == "on", fused)

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of images on the device, in the memory layout the networks use."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
