"""DataTree conversion: to_datatree and from_datatree are inverses, nested plates included."""

import numpy as np

from amortize.convert import from_datatree, to_datatree
from amortize.prepare import prepare_data
from amortize.graph import build_graph
from tests.conftest import three_level


def test_from_datatree_restores_the_padded_layout_of_ragged_nested_data():
    graph = build_graph(three_level, ["y"], {"region": (1, 4), "county": (1, 4), "house": (1, 5)})
    rng = np.random.default_rng(0)
    # region 0: counties with 2 and 4 houses; region 1: one county with 1 house.
    y = [[rng.normal(size=2), rng.normal(size=4)], [rng.normal(size=1)]]
    prepared = prepare_data(graph, {"y": y}, coords={"region": np.array(["north", "south"])})
    draws = {"mu": rng.normal(size=6), "sigma": rng.uniform(1, 2, size=6),
             "alpha": rng.normal(size=(6, 2)), "beta": rng.normal(size=(6, 3))}
    tree = to_datatree(draws, prepared, graph, num_chains=2)
    padded = from_datatree(tree, graph)

    assert padded.sizes == {"region": 2, "county": 2, "house": 4}
    np.testing.assert_array_equal(padded.masks["house"].sum(-1), [[2, 4], [1, 0]])
    np.testing.assert_allclose(padded.data["y"][0, 1], y[0][1])
    np.testing.assert_allclose(padded.data["y"][1, 0, :1], y[1][0])
    # Padded entries hold a real value (inside the support), not zeros.
    assert padded.data["y"][1, 0, 3] == padded.data["y"][0, 0, 0]
    np.testing.assert_allclose(padded.latents["beta"][:, 0, 1], draws["beta"][:, 1])
    np.testing.assert_allclose(padded.latents["beta"][:, 1, 0], draws["beta"][:, 2])
    np.testing.assert_allclose(padded.latents["alpha"], draws["alpha"])
    assert padded.num_chains == 2 and padded.latents["mu"].shape == (6,)
    for plate in graph.plates:
        np.testing.assert_array_equal(padded.instances[plate], prepared.instances[plate])
