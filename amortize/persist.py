"""The saved-amortizer file: one zip archive.

Contents: ``manifest.json`` (format version, what was compiled, a fingerprint
of the program's graph, network configuration, history), ``weights.npz``
(every network variable, by path) and ``program.pkl`` (the program, by
cloudpickle: by reference when importable, by value otherwise). A saved
model comparison has the same three members, with every model's fingerprint
and a name → program mapping.

This module only reads and writes archives; it imports neither facade. Each
facade (:class:`~amortize.Amortizer`, :class:`~amortize.ModelComparison`)
writes its own manifest and rebuilds itself from an :class:`Archive`;
:func:`amortize.load` (:mod:`amortize.loading`) dispatches on the format.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
import cloudpickle
import jax.numpy as jnp
import numpy as np
from flax import nnx

from amortize._version import __version__
from amortize.errors import AmortizeError, AmortizerFileError
from amortize.graph import build_graph

__all__ = ["Archive", "FORMAT", "COMPARISON_FORMAT", "manifest", "write_archive", "read_archive", "fill_weights",
           "restore_programs", "checked_graph", "history_of"]

FORMAT = "amortize.amortizer"
COMPARISON_FORMAT = "amortize.comparison"
VERSION = 1


def _flatten(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(_flatten(value, path))
        else:
            out[path] = np.asarray(value)
    return out


@dataclass(frozen=True)
class Archive:
    """A saved file's members, read and checked (format and version) by :func:`read_archive`."""

    path: Path
    manifest: dict
    weights: bytes
    programs: bytes


def manifest(kind: str, saved, graph, **extra) -> dict:
    """What every saved file records: format, versions, data, sizes, network configuration, history.

    ``saved`` is the facade (its ``network_config`` and ``history``), ``graph``
    a :class:`~amortize.graph.ModelGraph` whose data names and sizes it shares.
    """
    return {
        "format": kind,
        "version": VERSION,
        "amortize_version": __version__,
        **extra,
        "data": list(graph.data_names),
        "sizes": {p: list(r) for p, r in graph.size_ranges.items()},
        "network_config": saved.network_config.to_dict(),
        "history": {k: np.asarray(v).tolist() for k, v in (saved.history or {}).items()},
    }


def _describe_mismatch(saved: dict, current: dict) -> str:
    for kind in ("data", "plates", "sites"):
        if saved.get(kind) != current.get(kind):
            if kind == "sites":
                names = set(saved["sites"]) | set(current["sites"])
                for name in sorted(names):
                    if saved["sites"].get(name) != current["sites"].get(name):
                        return (f"site `{name}` was {saved['sites'].get(name)} when saved and is "
                                f"{current['sites'].get(name)} in this program")
            return f"its {kind} were {saved.get(kind)} when saved and are {current.get(kind)} now"
    return "the graphs differ"


def write_archive(path, manifest: dict, network, programs) -> None:
    """Write the archive atomically: to a temporary file beside ``path``, then renamed over it, so a
    crash mid-save never leaves a corrupted file where a good one was."""
    path = Path(path)
    if not path.parent.is_dir():
        raise AmortizerFileError(f"Cannot save to {path}: the folder {path.parent} does not exist. "
                                 f"Create it first (Path(...).mkdir(parents=True)).")
    if path.is_dir():
        raise AmortizerFileError(f"Cannot save to {path}: it is a folder. Give a file name, e.g. {path / 'model.amortizer'}.")
    weights = _flatten(nnx.to_pure_dict(nnx.state(network)))
    buffer = io.BytesIO()
    np.savez(buffer, **weights)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", json.dumps(manifest, indent=1))
            archive.writestr("weights.npz", buffer.getvalue())
            archive.writestr("program.pkl", cloudpickle.dumps(programs))
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def fill_weights(network, weights_bytes: bytes, path: Path) -> None:
    """Replace ``network``'s variables by the saved ones, checking names and shapes."""
    state = nnx.state(network)
    pure = nnx.to_pure_dict(state)
    expected = _flatten(pure)
    try:
        with np.load(io.BytesIO(weights_bytes)) as stored:
            saved = {k: stored[k] for k in stored.files}
    except Exception as error:  # a damaged npz raises several unrelated types
        raise AmortizerFileError(f"The weights in {path} are corrupted ({error}).") from None
    if set(saved) != set(expected) or any(saved[k].shape != expected[k].shape for k in expected):
        raise AmortizerFileError(
            f"The weights in {path} do not fit the networks of this program and configuration; "
            f"the file was written by an incompatible version of amortize."
        )

    def fill(tree, prefix=""):
        for key, value in tree.items():
            p = f"{prefix}/{key}" if prefix else str(key)
            if isinstance(value, dict):
                fill(value, p)
            else:
                tree[key] = jnp.asarray(saved[p])

    fill(pure)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(network, state)


def restore_programs(program_bytes: bytes, path: Path, hint: str):
    try:
        return cloudpickle.loads(program_bytes)
    except Exception as error:  # any unpickling failure means the program cannot be restored
        raise AmortizerFileError(
            f"The program saved in {path} could not be restored ({type(error).__name__}: "
            f"{error}); pass it explicitly: {hint}."
        ) from None


def checked_graph(model, manifest: dict, fingerprint: dict, path: Path, label: str = "The program"):
    """``model``'s graph at the saved data names and sizes, refused unless its fingerprint is the saved one."""
    try:
        graph = build_graph(model, manifest["data"], {p: tuple(r) for p, r in manifest["sizes"].items()})
    except AmortizeError as error:
        raise AmortizerFileError(f"{label} does not compile as saved in {path}: {error}") from None
    current = graph.fingerprint()
    if current != fingerprint:
        raise AmortizerFileError(
            f"{label} does not match the one saved in {path}: "
            f"{_describe_mismatch(fingerprint, current)}. Load it with the "
            f"program it was trained on, or train anew."
        )
    return graph


def read_archive(path) -> Archive:
    """Read a saved file's members and check its format and version.

    Raises
    ------
    AmortizerFileError
        The file is missing, a folder, not an amortize archive, corrupted, or
        from an incompatible version.
    """
    path = Path(path)
    if not path.exists():
        raise AmortizerFileError(f"No saved amortizer at {path}: the file does not exist.")
    if path.is_dir():
        raise AmortizerFileError(f"{path} is a folder, not a saved amortizer; give the file written by "
                                 f"`amortizer.save(path)`.")
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            weights_bytes = archive.read("weights.npz")
            program_bytes = archive.read("program.pkl")
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError, EOFError) as error:
        raise AmortizerFileError(
            f"{path} is not a readable amortizer file ({type(error).__name__}: {error}); "
            f"it may be truncated or corrupted. Save it again with `amortizer.save(path)`."
        ) from None
    if manifest.get("format") not in (FORMAT, COMPARISON_FORMAT):
        raise AmortizerFileError(f"{path} is not an amortizer file (format {manifest.get('format')!r}).")
    if manifest.get("version") != VERSION:
        raise AmortizerFileError(
            f"{path} has amortizer file version {manifest.get('version')}, this amortize reads "
            f"version {VERSION}; save it again with this version of amortize."
        )
    return Archive(path, manifest, weights_bytes, program_bytes)


def history_of(manifest: dict) -> dict | None:
    """The training history a manifest records, as arrays (None if it has none)."""
    return {k: np.asarray(v) for k, v in manifest.get("history", {}).items()} or None
