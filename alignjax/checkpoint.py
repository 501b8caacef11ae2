"""Orbax checkpoints of a whole sweep state (all grid rows at once).

A checkpoint stores the flattened leaves of the state pytree (PRNG keys as raw key data),
the metrics gathered so far and the number of completed chunks. Saves are synchronous, so a
returned :func:`save` is a finished checkpoint; a process killed mid-save leaves only an
orbax temporary folder, which :func:`latest` never returns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["manager", "save", "restore", "latest"]


def manager(directory: str | Path, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """A synchronous ``CheckpointManager`` in ``directory`` keeping the last ``max_to_keep``."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False)
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _impl_of(ref: Any):
    """The PRNG implementation of a (possibly abstract) key array."""
    impl = getattr(ref.dtype, "_impl", None)  # jax's key dtype carries its impl
    return impl if impl is not None else jax.random.key_impl(jax.random.key(0))


def save(mgr: ocp.CheckpointManager, step: int, state: Any, metrics: dict[str, np.ndarray],
         fingerprint: dict | None = None) -> None:
    """Save ``state`` (any pytree, keys allowed) and host ``metrics`` as checkpoint ``step``.

    ``fingerprint`` (a JSON-able dict describing the run) is stored with it; :func:`restore`
    refuses a checkpoint whose fingerprint differs from the resuming run's.
    """
    leaves = jax.tree.leaves(state)
    data = {f"{i:05d}": np.asarray(jax.random.key_data(x) if _is_key(x) else x) for i, x in enumerate(leaves)}
    item = {"state": data, "metrics": {k: np.asarray(v) for k, v in metrics.items()}}
    if fingerprint is not None:
        item["fingerprint"] = np.frombuffer(json.dumps(fingerprint, sort_keys=True).encode(), dtype=np.uint8)
    mgr.save(step, args=ocp.args.StandardSave(item))
    mgr.wait_until_finished()


def latest(mgr: ocp.CheckpointManager) -> int | None:
    """The newest finished checkpoint step, or None."""
    return mgr.latest_step()


def restore(mgr: ocp.CheckpointManager, step: int, like: Any,
            fingerprint: dict | None = None) -> tuple[Any, dict[str, np.ndarray]]:
    """Restore checkpoint ``step`` into the structure of ``like`` (e.g. ``jax.eval_shape`` of init).

    Returns host (numpy) leaves, with PRNG-key leaves re-wrapped with their original impl.
    Raises ``ValueError`` if the checkpoint was written by another run: a different
    ``fingerprint`` (when both have one), number of leaves, or leaf shape or dtype.
    """
    item = mgr.restore(step, args=ocp.args.StandardRestore())
    leaves, treedef = jax.tree.flatten(like)
    data = item["state"]
    if fingerprint is not None and "fingerprint" in item:
        saved = json.loads(np.asarray(item["fingerprint"], dtype=np.uint8).tobytes().decode())
        want = json.loads(json.dumps(fingerprint, sort_keys=True))
        diff = sorted(k for k in set(saved) | set(want) if saved.get(k) != want.get(k))
        if diff:
            raise ValueError(f"the checkpoint was written by another run (it differs in {', '.join(diff)}); "
                             "start a new run instead of resuming")
    if len(data) != len(leaves):
        raise ValueError(f"checkpoint has {len(data)} state leaves, the program expects {len(leaves)}")
    out = []
    for i, ref in enumerate(leaves):
        x = np.asarray(data[f"{i:05d}"])
        want_shape = tuple(ref.shape)
        if _is_key(ref):  # raw key data carries the impl's trailing words
            want_shape += tuple(jax.random.key_data(jax.random.key(0, impl=_impl_of(ref))).shape)
        if x.shape != want_shape:
            raise ValueError(f"checkpoint state leaf {i} has shape {x.shape}, the program expects {want_shape}")
        if _is_key(ref):
            out.append(jax.random.wrap_key_data(x, impl=_impl_of(ref)))
        else:
            out.append(x)
    metrics = {k: np.asarray(v) for k, v in item.get("metrics", {}).items()}
    return jax.tree.unflatten(treedef, out), metrics
