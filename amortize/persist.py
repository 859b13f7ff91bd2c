"""The saved-amortizer file: one zip archive.

Contents: ``manifest.json`` (format version, what was compiled, a fingerprint
of the program's graph, network configuration, history), ``weights.npz``
(every network variable, by path) and ``program.pkl`` (the program, by
cloudpickle: by reference when importable, by value otherwise).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import cloudpickle
import jax.numpy as jnp
import numpy as np
from flax import nnx

from amortize.errors import AmortizeError, AmortizerFileError

__all__ = ["save_amortizer", "load"]

FORMAT = "amortize.amortizer"
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


def save_amortizer(amortizer, path) -> None:
    """Write ``amortizer`` to ``path``; see :func:`load`."""
    from amortize import __version__

    graph = amortizer.graph
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "amortize_version": __version__,
        "data": list(graph.data_names),
        "sizes": {p: list(r.size_range) for p, r in graph.plates.items()},
        "network_config": amortizer.network_config.to_dict(),
        "fingerprint": graph.fingerprint(),
        "history": {k: np.asarray(v).tolist() for k, v in (amortizer.history or {}).items()},
    }
    weights = _flatten(nnx.to_pure_dict(nnx.state(amortizer.network)))
    buffer = io.BytesIO()
    np.savez(buffer, **weights)
    with zipfile.ZipFile(Path(path), "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=1))
        archive.writestr("weights.npz", buffer.getvalue())
        archive.writestr("program.pkl", cloudpickle.dumps(graph.model))


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


def load(path, model=None):
    """Load an amortizer written by :meth:`Amortizer.save`.

    Parameters
    ----------
    path : str or Path
    model : callable, optional
        The program to attach. By default the pickled program in the file is
        used; pass the program when its module has moved. It must compile to
        the same graph as the saved one.

    Returns
    -------
    Amortizer
        Draws under the same seed equal those of the saved amortizer.

    Raises
    ------
    AmortizerFileError
        The file is missing, not an amortizer, corrupted, from an incompatible
        version, or its program does not match.
    """
    from amortize.amortizer import Amortizer
    from amortize.build import AmortizerNetwork, NetworkConfig
    from amortize.graph import build_graph, factorize

    path = Path(path)
    if not path.exists():
        raise AmortizerFileError(f"No saved amortizer at {path}: the file does not exist.")
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
    if manifest.get("format") != FORMAT:
        raise AmortizerFileError(f"{path} is not an amortizer file (format {manifest.get('format')!r}).")
    if manifest.get("version") != VERSION:
        raise AmortizerFileError(
            f"{path} has amortizer file version {manifest.get('version')}, this amortize reads "
            f"version {VERSION}; save it again with this version of amortize."
        )
    if model is None:
        try:
            model = cloudpickle.loads(program_bytes)
        except Exception as error:  # any unpickling failure means the program cannot be restored
            raise AmortizerFileError(
                f"The program saved in {path} could not be restored ({type(error).__name__}: "
                f"{error}); pass it explicitly: am.load(path, model=my_model)."
            ) from None
    try:
        graph = build_graph(model, manifest["data"], {p: tuple(r) for p, r in manifest["sizes"].items()})
    except AmortizeError as error:
        raise AmortizerFileError(f"The program does not compile as saved in {path}: {error}") from None
    current = graph.fingerprint()
    if current != manifest["fingerprint"]:
        raise AmortizerFileError(
            f"The program does not match the amortizer saved in {path}: "
            f"{_describe_mismatch(manifest['fingerprint'], current)}. Load it with the "
            f"program it was trained on, or train a new amortizer."
        )
    amortizer = Amortizer(graph, factorize(graph), NetworkConfig(**manifest["network_config"]))
    network = AmortizerNetwork(amortizer.spec, rngs=nnx.Rngs(0))
    state = nnx.state(network)
    expected = _flatten(nnx.to_pure_dict(state))
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
    pure = nnx.to_pure_dict(state)

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
    amortizer.network = network
    amortizer.history = {k: np.asarray(v) for k, v in manifest.get("history", {}).items()} or None
    return amortizer
