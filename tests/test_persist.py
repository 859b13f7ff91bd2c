"""The archive format on its own: members, weights by path, and the refusals (no training needed).

Saving and loading whole amortizers (and comparisons) through the facades is
tested in test_amortizer.py and test_compare.py.
"""

import json
import zipfile

import numpy as np
import pytest
from flax import nnx

import amortize as am
from amortize import persist
from amortize.models import conjugate_normal as cn


class Tiny(nnx.Module):
    def __init__(self, width: int, seed: int):
        rngs = nnx.Rngs(seed)
        self.first = nnx.Linear(2, width, rngs=rngs)
        self.second = nnx.Linear(width, 1, rngs=rngs)


def _manifest():
    return {"format": persist.FORMAT, "version": persist.VERSION, "data": ["y"], "note": "test"}


def test_an_archive_round_trips_manifest_weights_and_programs(tmp_path):
    path = tmp_path / "tiny.amortizer"
    saved = Tiny(3, seed=0)
    persist.write_archive(path, _manifest(), saved, {"model": cn.model})
    archive = persist.read_archive(path)
    assert archive.manifest == _manifest()
    assert persist.restore_programs(archive.programs, path, "hint")["model"] is cn.model  # importable: by reference
    fresh = Tiny(3, seed=1)
    assert not np.allclose(fresh.first.kernel[...], saved.first.kernel[...])
    persist.fill_weights(fresh, archive.weights, path)
    for a, b in ((fresh.first.kernel, saved.first.kernel), (fresh.second.bias, saved.second.bias)):
        np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]))
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed over the target


def test_weights_that_do_not_fit_the_network_are_refused(tmp_path):
    path = tmp_path / "tiny.amortizer"
    persist.write_archive(path, _manifest(), Tiny(3, seed=0), {})
    weights = persist.read_archive(path).weights
    with pytest.raises(am.AmortizerFileError, match="do not fit the networks"):
        persist.fill_weights(Tiny(4, seed=0), weights, path)
    with pytest.raises(am.AmortizerFileError, match="weights in .* are corrupted"):
        persist.fill_weights(Tiny(3, seed=0), weights[:50], path)


def test_unknown_formats_and_unreadable_programs_are_refused(tmp_path):
    path = tmp_path / "other.amortizer"
    persist.write_archive(path, {**_manifest(), "format": "something.else"}, Tiny(3, seed=0), {})
    with pytest.raises(am.AmortizerFileError, match="not an amortizer file .*something.else"):
        persist.read_archive(path)
    with pytest.raises(am.AmortizerFileError, match="could not be restored .*pass it explicitly: am.load"):
        persist.restore_programs(b"not a pickle", path, "am.load(path, model=...)")


def test_a_program_is_checked_against_its_saved_fingerprint(tmp_path):
    graph = am.compile(cn.model, data=["y"], sizes={"group": (2, 5), "obs": (1, 6)}).graph
    manifest = {"data": ["y"], "sizes": {"group": [2, 5], "obs": [1, 6]}}
    assert persist.checked_graph(cn.model, manifest, graph.fingerprint(), tmp_path).fingerprint() == \
        graph.fingerprint()
    changed = json.loads(json.dumps(graph.fingerprint()))
    changed["sites"]["theta"] = "StudentT"
    with pytest.raises(am.AmortizerFileError, match=r"does not match .*site `theta` was StudentT"):
        persist.checked_graph(cn.model, manifest, changed, tmp_path)


def test_history_of_reads_arrays_back(tmp_path):
    assert persist.history_of({"history": {"loss": [3.0, 2.0]}})["loss"].tolist() == [3.0, 2.0]
    assert persist.history_of({}) is None
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as archive:  # an archive without the members
        archive.writestr("manifest.json", "{}")
    with pytest.raises(am.AmortizerFileError, match="not a readable amortizer file"):
        persist.read_archive(tmp_path / "x.zip")
