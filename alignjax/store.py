"""Sweep results as labelled arrays: a streamed Zarr store and :func:`load`.

A ``run`` folder keeps its metrics in ``results.zarr/`` (Zarr format 3, read by ``zarr`` and
``xarray``): one array per metric with dimensions

    (*swept axes, seed, step, *METRIC_dimK)      e.g. gap: (beta, eta, seed, step)

and one coordinate array per dimension (the swept values in grid order, ``seed = 0..S-1``,
``step`` the logged step numbers). A grid that is not the product of its axes (or has none
with several configs) gets one ``config`` dimension instead, with every varying
hyperparameter as a coordinate along it. Hyperparameters that vary over the grid without
being an axis (e.g. a step size derived from ``beta``) are coordinates over the axes; the
constant ones, the resolved settings and the provenance are attributes.

**Streaming.** :class:`StoreWriter` receives the metrics of one chunk of logged steps at a
time (:func:`alignjax.sweep.run_sweep`'s ``on_metrics``), compresses them into chunks of one
logged step (blosc-lz4, byte shuffle; the leading dimensions split so that a chunk holds at
most ``CHUNK_BYTES`` uncompressed) and writes them with :func:`alignjax.rundir.write_atomic_many`
(each file atomic and recorded in the folder's manifest, one manifest update per chunk).
Host memory holds one chunk. The root attribute ``steps_written`` advances only after a
chunk's files are in place; ``complete`` becomes true in :meth:`StoreWriter.finish`, together
with the consolidated metadata. A killed run's store is therefore never read as finished
(:func:`load` refuses it), and ``--resume`` continues it: steps up to the checkpoint are
already there, later ones are rewritten with identical bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["STORE_NAME", "CHUNK_BYTES", "StoreWriter", "load", "to_dataset", "to_result", "sweep_stage", "layout",
           "run_attrs"]

STORE_NAME = "results.zarr"
#: Uncompressed bytes of one stored chunk at most (one logged step of a slab of the grid).
CHUNK_BYTES = 8 << 20
_FORMAT = "alignjax-store/1"


# -- layout -----------------------------------------------------------------------------------
def _axis_values(grid) -> list[np.ndarray] | None:
    """The values of each swept axis when ``grid`` is their product in grid order (first slowest), else None."""
    if not grid.axes:
        return None
    vals = [np.asarray(list(dict.fromkeys(np.asarray(grid.hparams[a], dtype=np.float64).tolist())))
            for a in grid.axes]
    if math.prod(len(v) for v in vals) != grid.num_configs:
        return None
    mesh = np.meshgrid(*vals, indexing="ij")
    for a, m in zip(grid.axes, mesh):
        if not np.array_equal(m.ravel(), np.asarray(grid.hparams[a], dtype=np.float64)):
            return None
    return vals


def layout(grid) -> dict:
    """How a grid's rows map onto labelled dimensions.

    Returns ``{"dims": [...], "shape": [...], "coords": {name: (dims, values)}, "fixed": {name:
    value}}``: ``dims``/``shape`` of the leading dimensions (the swept axes then ``seed``,
    or ``config`` then ``seed``), the coordinates (axis values, ``seed``, varying
    hyperparameters), and the hyperparameters constant over the grid. Row ``b`` of the sweep
    (config ``b // S``, seed ``b % S``) is element ``b`` of the leading dimensions in C order.
    """
    vals = _axis_values(grid)
    S = grid.num_seeds
    if vals is not None:
        dims, shape = list(grid.axes), [len(v) for v in vals]
        coords = {a: ([a], v) for a, v in zip(grid.axes, vals)}
    else:
        dims, shape = ["config"], [grid.num_configs]
        coords = {"config": (["config"], np.arange(grid.num_configs))}
    const = {}
    for k, v in grid.hparams.items():
        v = np.asarray(v)
        if k in coords or v.ndim != 1:
            continue  # an axis, or per-config data with trailing axes (not a label)
        if np.all(v == v[0]) or v.size == 0:
            const[k] = float(v[0]) if v.size else None
        else:
            coords[k] = (list(dims), v.astype(np.float64).reshape(shape))
    coords["seed"] = (["seed"], np.arange(S))
    return {"dims": [*dims, "seed"], "shape": [*shape, S], "coords": coords, "fixed": const}


def _metric_dims(name: str, lead: list[str], extra: tuple[int, ...]) -> list[str]:
    return [*lead, "step", *[f"{name}_dim{i}" for i in range(len(extra))]]


def _chunks(lead_shape: list[int], extra: tuple[int, ...], itemsize: int, step_chunk: int = 1) -> tuple[int, ...]:
    """``step_chunk`` logged steps per chunk; the leading dimensions cut (slowest first) to ``CHUNK_BYTES``."""
    budget = max(1, CHUNK_BYTES // max(1, itemsize * math.prod(extra) * step_chunk))
    lead = [1] * len(lead_shape)
    for j in range(len(lead_shape) - 1, -1, -1):
        if lead_shape[j] <= budget:
            lead[j] = lead_shape[j]
            budget //= max(1, lead_shape[j])
        else:
            lead[j] = max(1, budget)
            break
    return (*lead, step_chunk, *extra)


# -- in memory --------------------------------------------------------------------------------
def to_dataset(result, attrs: Mapping[str, Any] | None = None):
    """An in-memory :class:`~alignjax.sweep.SweepResult` as the ``xarray.Dataset`` that :func:`load` returns.

    One variable per metric, ``(configs, seeds, T, ...)`` reshaped to the dimensions of
    :func:`layout` (no copy of the values, no change of dtype); ``attrs`` are added to the
    dataset's attributes (JSON-able values).
    """
    import xarray as xr

    lay = layout(result.grid)
    data = {}
    for k, v in result.metrics.items():
        v = np.asarray(v)
        data[k] = (_metric_dims(k, lay["dims"], v.shape[3:]), v.reshape(*lay["shape"], *v.shape[2:]))
    coords = {k: (d, np.asarray(v)) for k, (d, v) in lay["coords"].items()}
    coords["step"] = (["step"], np.asarray(result.steps))
    return xr.Dataset(data, coords=coords, attrs={"axes": list(result.grid.axes), "fixed_hparams": lay["fixed"],
                                                  **dict(attrs or {})})


def to_result(ds, grid):
    """The :class:`~alignjax.sweep.SweepResult` of ``grid`` whose metrics are ``ds``'s (read into memory).

    The inverse of :func:`to_dataset`: each metric reshaped to ``(configs, seeds, T, ...)``.
    """
    from alignjax.sweep import SweepResult

    C, S = grid.num_configs, grid.num_seeds
    metrics = {}
    for k, v in ds.data_vars.items():
        a = np.asarray(v.values)
        lead = a.ndim - (v.dims.index("step"))
        metrics[k] = a.reshape(C, S, *a.shape[a.ndim - lead:])
    return SweepResult(grid, np.asarray(ds["step"].values), metrics)


def sweep_stage(result) -> dict:
    """A :class:`~alignjax.sweep.SweepResult` as a suite stage (:meth:`alignjax.results.SuiteContext.stage`).

    ``{"steps", "seeds", "axes", "hparams": {name: (configs,)}, "metrics": {name: (configs,
    seeds, T, ...)}}``; :func:`load` of the saved ``stages/NAME.npz`` gives the labelled
    dataset of the sweep (the axes as the names joined by ``","``, in a uint8 array).
    """
    return {"steps": np.asarray(result.steps), "seeds": np.asarray(result.grid.num_seeds),
            "axes": np.frombuffer(",".join(result.grid.axes).encode(), dtype=np.uint8),
            "hparams": {k: np.asarray(v) for k, v in result.grid.hparams.items()},
            "metrics": {k: np.asarray(v) for k, v in result.metrics.items()}}


# -- the streamed store -----------------------------------------------------------------------
def _codecs():
    from zarr.codecs import BloscCodec

    # measured on the issue-25 sweep's metrics (10^5 runs): lz4 with byte shuffle wrote 2.4x faster
    # than zstd level 3 for the same size (68 vs 69 MiB); float32 metrics keep ~65-80% of their bytes
    return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]


def _identity(grid, steps) -> str:
    """What a store must share with the run that continues it: grid values, seeds and steps."""
    h = hashlib.sha256()
    for k in sorted(grid.hparams):
        h.update(k.encode())
        h.update(np.ascontiguousarray(np.asarray(grid.hparams[k], dtype=np.float64)).tobytes())
    h.update(json.dumps([list(grid.axes), grid.num_seeds, np.asarray(steps).tolist()]).encode())
    return h.hexdigest()


class StoreWriter:
    """Write a sweep's metrics chunk by chunk into ``folder/results.zarr`` (see the module docstring).

    ``StoreWriter(folder, grid, steps, attrs=..., resume=...)`` then ``write(t0, metrics)`` for
    each chunk (it is :func:`~alignjax.sweep.run_sweep`'s ``on_metrics``) and :meth:`finish`.
    Along the way it keeps what the command line reports without reading the store back:
    :attr:`nonfinite` (the first non-finite value, as :func:`alignjax.results.first_nonfinite`)
    and :attr:`final_mean` (each scalar metric's mean over runs at the last step).

    With ``resume``, an existing store of the same grid and steps is continued (``ValueError``
    if it belongs to another run); a missing one is started.

    ``step_chunk`` logged steps go in one stored chunk (default 1; a long run streamed in
    chunks of ``n`` logged steps is best stored with ``step_chunk = n``: fewer, larger files).
    Writes need not line up with stored chunks: a chunk that is not full yet is on disk and is
    read back and completed by the next write (so it is written twice), also after a resume
    from any checkpoint.
    """

    def __init__(self, folder: str | os.PathLike, grid, steps, *, attrs: Mapping[str, Any] | None = None,
                 resume: bool = False, step_chunk: int = 1):
        import zarr
        from zarr.storage import MemoryStore

        self.root = Path(folder) / STORE_NAME
        self.grid, self.steps = grid, np.asarray(steps)
        self.step_chunk = max(1, min(int(step_chunk), len(self.steps)))
        self.lay = layout(grid)
        self.nonfinite: dict | None = None
        self.final_mean: dict[str, float] = {}
        self._mem = _Spilled(self.root)  # what zarr wrote since the last flush; chunks on disk read back on demand
        self._disk_meta: dict[str, bytes] = {}  # metadata files as last written
        self._store = MemoryStore(self._mem)
        ident = _identity(grid, self.steps)
        if resume and (self.root / "zarr.json").is_file():
            for p in self.root.rglob("zarr.json"):
                self._mem[p.relative_to(self.root).as_posix()] = _buffer(p.read_bytes())
            self.group = zarr.open_group(self._store, mode="r+")
            a = dict(self.group.attrs)
            if a.get("format") != _FORMAT or a.get("identity") != ident:
                raise ValueError(f"{str(self.root)!r} holds another run's results; it cannot be continued")
            self.written = int(a.get("steps_written", 0))
            self._disk_meta = {k: b.to_bytes() for k, b in self._mem.items()}
        else:
            self.group = zarr.open_group(self._store, mode="w", zarr_format=3)
            self.group.attrs.update({"format": _FORMAT, "identity": ident, "complete": False, "steps_written": 0,
                                     "metrics": [],
                                     "axes": list(grid.axes), "fixed_hparams": self.lay["fixed"],
                                     **json.loads(json.dumps(dict(attrs or {})))})
            for name, (dims, v) in {**self.lay["coords"], "step": (["step"], self.steps)}.items():
                v = np.asarray(v)
                arr = self.group.create_array(name, shape=v.shape, dtype=v.dtype, chunks=v.shape or (1,),
                                              dimension_names=dims, compressors=_codecs())
                arr[...] = v
            self.written = 0
            self._flush()

    def write(self, t0: int, metrics: Mapping[str, np.ndarray]) -> None:
        """Store logged steps ``t0 .. t0 + n - 1``: ``metrics[name]`` is ``(rows, n, ...)`` (rows in grid order).

        ``ValueError`` when ``t0`` is past the steps stored so far (a gap would be read as data:
        e.g. a resumed run whose store was removed while its checkpoints were kept).
        """
        if t0 > self.written:
            raise ValueError(f"{str(self.root)!r} holds the first {self.written} logged steps only; the run continues "
                             f"at step index {t0} (was it removed or replaced?); start the run again without --resume")
        lead = self.lay["shape"]
        names = self.lay["dims"]
        for k, v in metrics.items():
            v = np.asarray(v)
            n, extra = v.shape[1], v.shape[2:]
            if k not in self.group:
                self.group.create_array(k, shape=(*lead, len(self.steps), *extra), dtype=v.dtype,
                                        chunks=_chunks(lead, extra, v.dtype.itemsize, self.step_chunk),
                                        dimension_names=_metric_dims(k, names, extra), compressors=_codecs(),
                                        fill_value=np.nan if v.dtype.kind == "f" else 0)
                self.group.attrs["metrics"] = [*self.group.attrs["metrics"], k]
            if self.group.attrs.get("complete"):  # a finished store written again (a resumed run): not finished now
                self.group.attrs["complete"] = False
            arr = self.group[k]
            idx = (*[slice(None)] * len(lead), slice(t0, t0 + n))
            arr[idx] = v.reshape(*lead, n, *extra)
            self._track(k, t0, v)
        self.written = max(self.written, t0 + next(iter(metrics.values())).shape[1]) if metrics else self.written
        self.group.attrs["steps_written"] = self.written
        self._flush()

    def _track(self, name: str, t0: int, v: np.ndarray) -> None:
        if v.dtype.kind == "f":
            bad = ~np.isfinite(v.reshape(*v.shape[:2], -1)).all(axis=-1) if v.size else np.zeros(v.shape[:2], bool)
            if bad.any():
                rows, ts = np.nonzero(bad)
                t = int(ts.min())
                r = int(rows[ts == t].min())
                step = t0 + t
                if self.nonfinite is None or step < self.nonfinite["_t"]:
                    c, s = divmod(r, self.grid.num_seeds)
                    cell = np.asarray(v[r, t])
                    value = cell[~np.isfinite(cell)].ravel()[0]
                    self.nonfinite = {"_t": step, "metric": name, "config": c, "seed": s,
                                      "step": int(self.steps[step]), "value": str(value),
                                      "hparams": {k: float(h[c]) for k, h in self.grid.hparams.items()
                                                  if np.ndim(h) == 1}}
        if v.ndim == 2 and t0 + v.shape[1] == len(self.steps):
            self.final_mean[name] = float(np.mean(v[:, -1]))

    def rescan(self, ds=None) -> None:
        """Recompute :attr:`nonfinite` and :attr:`final_mean` from the stored steps (``ds``: this
        store's dataset, default: opened here), one logged step at a time (a resumed run saw only
        the steps it computed itself)."""
        ds = _open_dataset(self.root) if ds is None else ds
        self.nonfinite, self.final_mean = None, {}
        rows = self.grid.size
        for t in range(len(self.steps)):
            for k in self._metrics():
                v = np.asarray(ds[k].isel(step=t).values)
                self._track(k, t, v.reshape(rows, 1, *v.shape[len(self.lay["dims"]):]))

    def first_nonfinite(self) -> dict | None:
        """The earliest non-finite value seen (``None`` if all were finite); see :func:`alignjax.results.first_nonfinite`."""
        return None if self.nonfinite is None else {k: v for k, v in self.nonfinite.items() if k != "_t"}

    def finish(self, attrs: Mapping[str, Any] | None = None) -> Path:
        """Mark the store complete (after every step is written), add ``attrs``, consolidate; returns its path."""
        import zarr

        if self.written != len(self.steps):
            raise ValueError(f"the store holds {self.written} of {len(self.steps)} logged steps; it cannot be finished")
        self.group.attrs.update({**json.loads(json.dumps(dict(attrs or {}))), "complete": True})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr: consolidated metadata is not yet part of the v3 spec
            zarr.consolidate_metadata(self._store)
        self._flush()
        return self.root

    def _metrics(self) -> list[str]:
        return list(self.group.attrs.get("metrics", []))

    def _flush(self) -> None:
        """Write what zarr put in the memory store since the last flush: chunks first, then metadata."""
        from alignjax.rundir import write_atomic_many

        data = sorted(k for k in self._mem if not k.endswith("zarr.json"))
        # arrays' metadata before the root's (which holds steps_written and complete)
        meta = sorted((k for k in self._mem if k.endswith("zarr.json")), key=lambda k: (-k.count("/"), k))
        files = {self.root / k: self._mem[k].to_bytes() for k in data}
        for k in meta:
            b = self._mem[k].to_bytes()
            if self._disk_meta.get(k) != b:
                files[self.root / k] = b
        write_atomic_many(files)
        for k in data:  # a chunk that a later write completes is read back from disk (_Spilled)
            del self._mem[k]
        self._disk_meta = {k: self._mem[k].to_bytes() for k in meta}


class _Spilled(dict):
    """The writer's memory store: chunk files not in memory are read from the store folder on demand.

    zarr reads a stored chunk only to complete it (a write that covers part of a chunk, e.g. the
    steps after a resume); every file on disk was written whole (atomically), so reading it back
    gives exactly what was stored. Metadata (``zarr.json``) stays in memory throughout.
    """

    def __init__(self, root: Path):
        super().__init__()
        self.root = root

    def __missing__(self, key: str):
        p = self.root / key
        if key.endswith("zarr.json") or not p.is_file():
            raise KeyError(key)
        return _buffer(p.read_bytes())


def _buffer(b: bytes):
    from zarr.core.buffer import default_buffer_prototype

    return default_buffer_prototype().buffer.from_bytes(b)


# -- reading ----------------------------------------------------------------------------------
def load(folder: str | os.PathLike, stage: str | None = None):
    """The results of a folder as an ``xarray.Dataset`` (lazily read; ``.load()`` reads it all).

    Args:
      folder: a ``run`` folder (its ``results.zarr``; folders written before the store existed:
        its ``arrays.npz``), a store folder itself, a suite folder with ``stage``, or a stage
        file ``stages/NAME.npz``.
      stage: the name of a suite stage in ``folder/stages/``.

    Returns:
      One variable per metric with dimensions ``(*swept axes, seed, step, *METRIC_dimK)`` (or
      ``(config, seed, step, ...)`` for a grid that is not a product of its axes), coordinates
      holding the swept values, seeds and logged steps; ``attrs`` hold the constant
      hyperparameters, the resolved settings (``config``, ``sweep``, ``seeds``, ``seed``) and
      the provenance (``alignjax``) when the folder has them. A stage that is not a sweep
      (:func:`sweep_stage`) gives one variable per leaf (``a/b`` named ``a.b``).

    Raises:
      ValueError: (one line) nothing to load, or a store whose run did not finish (killed
        runs keep a partial store for ``--resume``; it is never read as finished).
    """
    p = Path(folder)
    if stage is not None:
        p = p / "stages" / f"{stage}.npz"
    if p.suffix == ".npz" and p.is_file():
        return _load_npz(p)
    store = p if (p / "zarr.json").is_file() else p / STORE_NAME
    if (store / "zarr.json").is_file():
        return _load_store(store)
    if (p / "arrays.npz").is_file():
        return _load_npz(p / "arrays.npz", _read_config(p))
    raise ValueError(f"{str(p)!r} holds no results to load (no {STORE_NAME}, arrays.npz or stage file)")


def _read_config(folder: Path) -> dict:
    from alignjax.safe_read import read_json_or_none

    cfg = read_json_or_none(folder / "config.json")
    return cfg if isinstance(cfg, dict) else {}


def _load_store(store: Path):
    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attrs = dict(zarr.open_group(str(store), mode="r").attrs)
    if attrs.get("format") != _FORMAT:
        raise ValueError(f"{str(store)!r} is not an alignjax results store")
    if attrs.get("complete") is not True:
        raise ValueError(f"{str(store)!r} is unfinished ({attrs.get('steps_written')} logged steps written): "
                         "its run was interrupted; continue it with --resume")
    return _open_dataset(store, consolidated=True)


def _open_dataset(store: Path, consolidated: bool = False):
    """The store as a lazy dataset, finished or not (no checks; :func:`load` checks)."""
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(str(store), consolidated=consolidated, chunks=None, mask_and_scale=False,
                          decode_times=False, decode_timedelta=False, zarr_format=3)
    for k in ("format", "identity", "complete", "steps_written", "metrics"):
        ds.attrs.pop(k, None)
    return ds


def _load_npz(path: Path, cfg: Mapping[str, Any] | None = None):
    """A stage file (:func:`sweep_stage` layout or any nested arrays) or an older ``arrays.npz``."""
    import xarray as xr

    from alignjax.results import _unflatten_stage
    from alignjax.sweep import Grid, SweepResult

    with np.load(path, allow_pickle=False) as z:
        flat = {k: z[k] for k in z.files}
    if "steps" in flat and any(k.startswith("hparam.") for k in flat):  # arrays.npz of a run
        hp = {k[len("hparam."):]: v for k, v in flat.items() if k.startswith("hparam.")}
        metrics = {k: v for k, v in flat.items() if k not in ("steps", "axes") and "." not in k}
        seeds = next(iter(metrics.values())).shape[1] if metrics else 1
        grid = Grid(hp, tuple(str(a) for a in flat["axes"]), seeds)
        return to_dataset(SweepResult(grid, flat["steps"], metrics), run_attrs(cfg or {}))
    tree = _unflatten_stage(flat)
    if isinstance(tree.get("metrics"), dict) and "steps" in tree and "hparams" in tree:
        axes = bytes(np.asarray(tree.get("axes", np.zeros(0, np.uint8)), dtype=np.uint8)).decode()
        grid = Grid(dict(tree["hparams"]), tuple(a for a in axes.split(",") if a), int(tree["seeds"]))
        return to_dataset(SweepResult(grid, tree["steps"], dict(tree["metrics"])), {"stage": path.stem})
    data = {}
    for k, v in flat.items():
        if k.endswith("/"):
            continue
        name = k.replace("/", ".")
        data[name] = ([f"{name}_dim{i}" for i in range(v.ndim)], v)
    return xr.Dataset(data, attrs={"stage": path.stem})


def run_attrs(cfg: Mapping[str, Any]) -> dict:
    """The settings and provenance of a run's ``config.json`` (``experiment``, ``config``,
    ``hparams``, ``sweep``, ``seeds``, ``seed``, ``alignjax``) kept as dataset attributes."""
    keys = ("experiment", "config", "hparams", "sweep", "seeds", "seed", "alignjax")
    return {k: cfg[k] for k in keys if k in cfg}

