"""The saved-amortizer file: one zip archive.

Contents: ``manifest.json`` (format version, what was compiled, a fingerprint
of the program's graph, network configuration, history), ``weights.npz``
(every network variable, by path) and ``program.pkl`` (the program, by
cloudpickle: by reference when importable, by value otherwise). A saved
model comparison has the same three members, with every model's fingerprint
and a name → program mapping.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Mapping

import cloudpickle
import jax.numpy as jnp
import numpy as np
from flax import nnx

from amortize.errors import AmortizeError, AmortizerFileError

__all__ = ["save_amortizer", "save_comparison", "load"]

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


def _manifest(kind: str, saved, **extra) -> dict:
    """What every saved file records: format, versions, data, sizes, network configuration, history."""
    from amortize import __version__

    graph = saved.graph
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


def save_amortizer(amortizer, path) -> None:
    """Write ``amortizer`` to ``path``; see :func:`load`."""
    manifest = _manifest(FORMAT, amortizer, fingerprint=amortizer.graph.fingerprint())
    _write_archive(path, manifest, amortizer.network, amortizer.graph.model)


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


def _write_archive(path, manifest: dict, network, programs) -> None:
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


def _fill_weights(network, weights_bytes: bytes, path: Path) -> None:
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


def _restore_programs(program_bytes: bytes, path: Path, hint: str):
    try:
        return cloudpickle.loads(program_bytes)
    except Exception as error:  # any unpickling failure means the program cannot be restored
        raise AmortizerFileError(
            f"The program saved in {path} could not be restored ({type(error).__name__}: "
            f"{error}); pass it explicitly: {hint}."
        ) from None


def _checked_graph(model, manifest: dict, fingerprint: dict, path: Path, label: str = "The program"):
    from amortize.graph import build_graph

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


def load(path, model=None):
    """Load an amortizer written by :meth:`Amortizer.save` (or a comparison, by :meth:`ModelComparison.save`).

    Parameters
    ----------
    path : str or Path
    model : callable, or mapping of name → callable for a model comparison, optional
        The program(s) to attach. By default the pickled programs in the file
        are used; pass them when their module has moved. Each must compile
        to the same graph as the saved one.

    Returns
    -------
    Amortizer or ModelComparison
        Draws (or probabilities) under the same seed equal those of the saved one.

    Raises
    ------
    AmortizerFileError
        The file is missing, not an amortizer, corrupted, from an incompatible
        version, or its program does not match.
    """
    from amortize.amortizer import Amortizer
    from amortize.build import AmortizerNetwork, NetworkConfig
    from amortize.graph import factorize

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
    history = {k: np.asarray(v) for k, v in manifest.get("history", {}).items()} or None
    config = NetworkConfig(**manifest["network_config"])
    if manifest["format"] == COMPARISON_FORMAT:
        return _load_comparison(path, manifest, weights_bytes, program_bytes, model, config, history)
    if model is None:
        model = _restore_programs(program_bytes, path, "am.load(path, model=my_model)")
    graph = _checked_graph(model, manifest, manifest["fingerprint"], path)
    amortizer = Amortizer(graph, factorize(graph), config)
    network = AmortizerNetwork(amortizer.spec, rngs=nnx.Rngs(0))
    _fill_weights(network, weights_bytes, path)
    amortizer.network = network
    amortizer.history = history
    return amortizer


def save_comparison(comparison, path) -> None:
    """Write a trained :class:`ModelComparison` to ``path``; :func:`load` reads it back."""
    manifest = _manifest(COMPARISON_FORMAT, comparison, models=list(comparison.names),
                         prior=comparison.prior.tolist(),
                         fingerprints={name: g.fingerprint() for name, g in comparison.graphs.items()})
    _write_archive(path, manifest, comparison.network,
                   {name: g.model for name, g in comparison.graphs.items()})


def _load_comparison(path, manifest, weights_bytes, program_bytes, models, config, history):
    from amortize.compare import ComparisonNetwork, ModelComparison

    names = manifest["models"]
    if models is None:
        models = _restore_programs(program_bytes, path, "am.load(path, model={'name': program, ...})")
    if not isinstance(models, Mapping) or list(models) != names:
        raise AmortizerFileError(
            f"{path} holds a comparison of the models {names}; pass model= as a mapping with "
            f"exactly those names, in that order.")
    graphs = {name: _checked_graph(models[name], manifest, manifest["fingerprints"][name], path,
                                   label=f"Model `{name}`") for name in names}
    comparison = ModelComparison(graphs, manifest["prior"], config)
    network = ComparisonNetwork(comparison.spec, len(names), rngs=nnx.Rngs(0))
    _fill_weights(network, weights_bytes, path)
    comparison.network = network
    comparison.history = history
    return comparison
