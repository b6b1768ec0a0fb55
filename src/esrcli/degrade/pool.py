"""Real-ESRGAN's training-pair pool (``_dequeue_and_enqueue``).

Synthesised batches are correlated (neighbouring crops, similar parameters drawn close in
time); Real-ESRGAN keeps a pool of 180 pairs, and once the pool is full each new batch is
swapped for a random batch out of the shuffled pool. Until then batches pass through
unchanged while the pool fills.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["PairPool"]


class PairPool:
    """A shuffled queue of training pairs: ``lq``, ``gt`` and optionally ``gt_usm``.

    Args:
        pool_size: number of pairs kept (Real-ESRGAN: 180); rounded down to a multiple of
            ``batch_size`` (at least one batch).
        batch_size: the batch size every call to :meth:`exchange` must use.

    Raises:
        ValueError: ``pool_size`` or ``batch_size`` below 1.
    """

    def __init__(self, pool_size: int = 180, batch_size: int = 12) -> None:
        if batch_size < 1 or pool_size < 1:
            raise ValueError(f"pool_size and batch_size must be >= 1, got {pool_size}, {batch_size}")
        self.batch_size = batch_size
        self.pool_size = max(batch_size, pool_size // batch_size * batch_size)
        self._store: dict[str, torch.Tensor] = {}
        self._ptr = 0

    def __len__(self) -> int:
        """Number of pairs currently held."""
        return self._ptr

    @property
    def full(self) -> bool:
        return self._ptr == self.pool_size

    def exchange(
        self,
        lq: torch.Tensor,
        gt: torch.Tensor,
        gt_usm: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Put a batch into the pool and take one out (the same batch while the pool fills).

        Args:
            lq: ``(B, C, h, w)`` LQ batch, ``B == batch_size``.
            gt: ``(B, C, H, W)`` GT batch.
            gt_usm: optional ``(B, C, H, W)`` sharpened GT batch (always or never given).
            generator: random generator for the shuffle (on the tensors' device).

        Returns:
            ``(lq, gt, gt_usm)`` to train on (``gt_usm`` is ``None`` when not pooled).

        Raises:
            ValueError: a batch size, shape or set of tensors that differs from earlier calls.
        """
        batch = {"lq": lq, "gt": gt} if gt_usm is None else {"lq": lq, "gt": gt, "gt_usm": gt_usm}
        out = self.exchange_batch(batch, generator)
        return out["lq"], out["gt"], out.get("gt_usm")

    def exchange_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """:meth:`exchange` for any set of named tensors that travel together.

        Args:
            batch: tensors with ``batch_size`` rows each, e.g. ``{"lq", "gt", "gt_usm", "deg"}``
                (the same names and per-row shapes at every call); ``"lq"`` sets the device.
            generator: random generator for the shuffle (on the tensors' device).

        Returns:
            The batch to train on, under the same names (rows of one pair stay together).

        Raises:
            ValueError: a batch size, shape or set of names that differs from earlier calls.
        """
        lq = batch["lq"]
        b = lq.shape[0]
        if b != self.batch_size or any(t.shape[0] != b for t in batch.values()):
            raise ValueError(f"PairPool expects batches of {self.batch_size}, got {[t.shape[0] for t in batch.values()]}")
        if not self._store:
            self._store = {k: torch.zeros((self.pool_size, *t.shape[1:]), dtype=t.dtype, device=t.device) for k, t in batch.items()}
        if any(t.device != lq.device for t in self._store.values()):
            # a restored checkpoint's pool is read onto the CPU: follow the batches' device
            self._store = {k: t.to(lq.device) for k, t in self._store.items()}
        if set(batch) != set(self._store) or any(batch[k].shape[1:] != self._store[k].shape[1:] for k in batch):
            raise ValueError("PairPool: tensors differ from those pooled so far (names or shapes)")
        if self._ptr < self.pool_size:
            for k, t in batch.items():
                self._store[k][self._ptr : self._ptr + b] = t.detach()
            self._ptr += b
            return dict(batch)
        device = lq.device if generator is None else generator.device
        idx = torch.randperm(self.pool_size, generator=generator, device=device).to(lq.device)
        out = {}
        for k, t in batch.items():
            shuffled = self._store[k][idx]
            out[k] = shuffled[:b].clone()
            shuffled[:b] = t.detach()
            self._store[k] = shuffled
        return out

    def state_dict(self) -> dict[str, Any]:
        """The pool's contents and fill level, for a training checkpoint."""
        return {
            "pool_size": self.pool_size,
            "batch_size": self.batch_size,
            "ptr": self._ptr,
            "tensors": {k: t.clone() for k, t in self._store.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (tensors keep the device they were saved on).

        Raises:
            ValueError: a state of another pool or batch size, or a malformed state.
        """
        try:
            pool_size, batch_size, ptr, tensors = int(state["pool_size"]), int(state["batch_size"]), int(state["ptr"]), dict(state["tensors"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a PairPool state ({exc})") from None
        if (pool_size, batch_size) != (self.pool_size, self.batch_size):
            raise ValueError(f"PairPool state is for pool {pool_size} / batch {batch_size}, this pool is {self.pool_size} / {self.batch_size}")
        if not 0 <= ptr <= pool_size or any(t.shape[0] != pool_size for t in tensors.values()):
            raise ValueError("PairPool state is inconsistent")
        self._store = {k: t.clone() for k, t in tensors.items()}
        self._ptr = ptr
