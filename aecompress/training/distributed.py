"""Several processes under torchrun: rank and world size, the few collectives a run needs, the DDP wrapper."""

from __future__ import annotations

import hashlib
import os
import warnings

import torch
import torch.distributed as dist


class Distributed:
    """Rank and world size under torchrun; a no-op in a single process."""

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device("cuda", self.local_rank) if device.type == "cuda" else torch.device("cpu")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_agree(self, flag: bool) -> bool:
        """True only if ``flag`` is true on every rank (keeps ranks in lock-step)."""
        if self.world == 1:
            return flag
        return bool(self._reduce([1 if flag else 0], torch.int32, dist.ReduceOp.MIN)[0])

    def total(self, count: int) -> int:
        """The sum of ``count`` over the ranks (e.g. the images of all shards, for the summary)."""
        if self.world == 1:
            return count
        return int(self._reduce([count], torch.int64, dist.ReduceOp.SUM)[0])

    def agreed_clock(self, seconds: float, stop: bool) -> tuple[float, bool]:
        """The latest of the ranks' clocks, and whether any rank wants to stop: one collective per step.

        The lr schedule and the time budget read this clock, so every rank takes the same lr
        and the same stop decision (each rank's own clock would give each its own lr).
        """
        if self.world == 1:
            return seconds, stop
        latest, any_stop = self._reduce([seconds, float(stop)], torch.float64, dist.ReduceOp.MAX)
        return float(latest), bool(any_stop)

    def _reduce(self, values: list, dtype: torch.dtype, op) -> list:
        """One all_reduce of a few numbers, on the run's device (NCCL reduces CUDA tensors only)."""
        t = torch.tensor(values, dtype=dtype, device=self.device)
        dist.all_reduce(t, op=op)
        return t.cpu().tolist()

    def digests(self, module: torch.nn.Module) -> list[str]:
        """Hash of the weights on every rank (to check that they are identical)."""
        h = hashlib.sha256()
        for name, tensor in sorted(module.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        mine = h.hexdigest()[:16]
        if self.world == 1:
            return [mine]
        gathered: list[str] = [""] * self.world
        dist.all_gather_object(gathered, mine)
        return gathered

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def wrap(net: torch.nn.Module) -> torch.nn.Module:
    """Wrap for DDP without any buffer broadcast, at init or per step.

    Our only buffer is the context's constant mask, built identically on every rank; broadcasting a
    model's single buffer fails in torch (it aliases its own flat copy). Newer torch deprecates
    `broadcast_buffers` for `forward_sync_buffers`, which still syncs at init, and its warning says
    to keep `broadcast_buffers=False` for exactly this case: so we keep it, without the warning.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
        return torch.nn.parallel.DistributedDataParallel(net, broadcast_buffers=False)
