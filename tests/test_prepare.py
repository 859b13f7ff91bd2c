"""Rectangular, ragged and long-format data give the same padded arrays; bad data is named."""

import warnings

import numpy as np
import pytest

import amortize as am
from amortize.prepare import prepare_data
from amortize.graph import build_graph
from tests.conftest import three_level, two_level
from tests.graph.test_factorize import several_latents


@pytest.fixture(scope="module")
def graph():
    return build_graph(two_level, ["y"], {"group": (2, 6), "obs": (1, 4)})


def test_ragged_and_long_format_agree(graph):
    groups = [np.array([1.0, 2.0]), np.array([3.0]), np.array([4.0, 5.0, 6.0])]
    ragged = prepare_data(graph, {"y": groups}, pad_to=graph.max_sizes())
    rows = np.concatenate(groups)
    labels = np.array(["a", "a", "b", "c", "c", "c"])
    long = prepare_data(graph, {"y": rows}, index={"group": labels}, pad_to=graph.max_sizes())
    np.testing.assert_array_equal(ragged.data["y"], long.data["y"])
    np.testing.assert_array_equal(ragged.masks["obs"], long.masks["obs"])
    assert ragged.data["y"].shape == (1, 6, 4, 1)
    np.testing.assert_array_equal(ragged.masks["group"][0], [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(ragged.masks["obs"][0, :3].sum(-1), [2, 1, 3])
    assert list(long.labels["group"]) == ["a", "b", "c"]
    assert list(long.parent_labels["obs"]) == ["a", "a", "b", "c", "c", "c"]


def test_long_format_groups_rows_in_order_of_first_appearance(graph):
    rows = np.array([10.0, 20.0, 11.0, 21.0])
    prepared = prepare_data(graph, {"y": rows}, index={"group": np.array([7, 3, 7, 3])})
    assert list(prepared.labels["group"]) == [7, 3]
    np.testing.assert_array_equal(prepared.data["y"][0, :, :, 0], [[10.0, 11.0], [20.0, 21.0]])


def test_rectangular_matches_ragged(graph):
    y = np.arange(6.0).reshape(2, 3)
    a = prepare_data(graph, {"y": y})
    b = prepare_data(graph, {"y": list(y)})
    np.testing.assert_array_equal(a.data["y"], b.data["y"])


def test_three_levels_from_long_format():
    graph = build_graph(three_level, ["y"], {"region": (1, 3), "county": (1, 3), "house": (1, 3)})
    rows = np.arange(5.0)
    prepared = prepare_data(graph, {"y": rows}, index={"region": np.array([0, 0, 0, 1, 1]),
                                                        "county": np.array(["x", "x", "y", "z", "z"])})
    np.testing.assert_array_equal(prepared.masks["county"][0].sum(-1), [2, 1])
    np.testing.assert_array_equal(prepared.masks["house"][0].sum(-1), [[2, 1], [2, 0]])
    assert list(prepared.labels["county"]) == ["x", "y", "z"]
    assert list(prepared.parent_labels["county"]) == [0, 0, 1]


def test_unknown_data_site(graph):
    with pytest.raises(am.DataError, match=r"Unknown data site `z`.*compiled data sites are: y"):
        prepare_data(graph, {"y": np.zeros((2, 2)), "z": 1.0})


def test_latent_passed_as_data(graph):
    with pytest.raises(am.DataError, match=r"Unknown data site `mu` \(it is a latent site\)"):
        prepare_data(graph, {"y": np.zeros((2, 2)), "mu": 1.0})


def test_missing_data_site():
    graph = build_graph(several_latents, ["y", "x"], {"group": (2, 4), "obs": (1, 3)})
    with pytest.raises(am.DataError, match=r"Data site `x` \(plate `obs`\) is missing"):
        prepare_data(graph, {"y": np.zeros((2, 2))})


def test_shape_that_does_not_fit_the_plates(graph):
    with pytest.raises(am.DataError, match=r"Data for site `y` has shape \(6,\), but its plates \(group, obs\)"):
        prepare_data(graph, {"y": np.zeros(6)})


def test_sites_that_disagree_on_a_plate():
    graph = build_graph(several_latents, ["y", "x"], {"group": (2, 4), "obs": (1, 3)})
    with pytest.raises(am.DataError, match=r"`y` and `x` disagree on the instances of plate `group`"):
        prepare_data(graph, {"y": np.zeros((2, 2)), "x": np.zeros((3, 2))})


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_data(graph, bad):
    y = [np.array([1.0, bad]), np.array([0.0])]
    with pytest.raises(am.DataError, match=r"site `y` contains NaN or inf \(instance \(0, 1\) of group, obs\)"):
        prepare_data(graph, {"y": y})


def test_long_format_needs_labels_for_every_enclosing_plate():
    graph = build_graph(three_level, ["y"], {"region": (1, 3), "county": (1, 3), "house": (1, 3)})
    with pytest.raises(am.DataError, match=r"`index` has no labels for plate `county`"):
        prepare_data(graph, {"y": np.arange(3.0)}, index={"region": np.zeros(3)})


def test_long_format_index_of_the_wrong_length(graph):
    with pytest.raises(am.DataError, match=r"index\['group'\] has shape \(2,\), but site `y` has 3 rows"):
        prepare_data(graph, {"y": np.arange(3.0)}, index={"group": np.zeros(2)})


def test_sizes_outside_the_trained_range_warn(graph):
    with pytest.warns(am.AmortizationGapWarning, match=r"Plate `group` has 9 to 9 instances.*\[2, 6\]"):
        prepared = prepare_data(graph, {"y": np.zeros((9, 2))}, pad_to=graph.max_sizes())
    assert prepared.masks["group"].shape == (1, 16)  # padded to a power of two beyond the range
    with pytest.warns(am.AmortizationGapWarning, match=r"Plate `obs` has 1 to 7"):
        prepare_data(graph, {"y": [np.zeros(1), np.zeros(7)]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_data(graph, {"y": np.zeros((3, 4))})


def test_a_graph_without_training_ranges_takes_any_size_silently():
    from amortize.graph import graph_for

    graph = graph_for(two_level, ["y"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no amortization-gap warning: there is no trained range
        prepared = prepare_data(graph, {"y": np.zeros((9, 7))})
    assert prepared.masks["obs"].shape == (1, 9, 7)  # exact sizes: no padding without pad_to
