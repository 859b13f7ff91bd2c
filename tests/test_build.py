"""Network configuration: validation and presets."""

import pytest
from flax import nnx

import amortize as am
from amortize.build import AmortizerNetwork
from amortize.networks.config import AUTO_QUANTILES
from tests.conftest import two_level


def test_fast_preset_makes_local_flows_lean_and_keeps_global_splines():
    fast = am.NetworkConfig.fast()
    assert fast.flow_settings(local=True) == ("affine", 32, 0)
    assert fast.flow_settings(local=False) == ("spline", 64, 1)
    assert am.NetworkConfig.fast(flow_layers=6).flow_layers == 6
    assert am.NetworkConfig().flow_settings(local=True) == am.NetworkConfig().flow_settings(local=False)


def test_the_network_follows_the_local_settings():
    amortizer = am.compile(two_level, data=["y"], sizes={"group": (2, 5), "obs": (1, 4)},
                           network=am.NetworkConfig.fast())
    net = AmortizerNetwork(amortizer.spec, rngs=nnx.Rngs(0))
    assert (net.flows["group"].kind, net.flows["group"].hidden) == ("affine", 32)
    assert (net.flows["global"].kind, net.flows["global"].hidden) == ("spline", 64)


def test_quantile_features_go_where_a_discrete_latent_lives_by_default():
    from amortize.models import gaussian_mixture

    def quantiles(model, sizes, **config):
        amortizer = am.compile(model, data=["y"], sizes=sizes, network=am.NetworkConfig(**config))
        net = AmortizerNetwork(amortizer.spec, rngs=nnx.Rngs(0))
        return {level: summary.quantiles for level, summary in net.summaries.items()}

    assert quantiles(gaussian_mixture.model, {"obs": (5, 10)}) == {"obs": AUTO_QUANTILES}
    assert quantiles(gaussian_mixture.model, {"obs": (5, 10)}, quantiles=0) == {"obs": 0}
    assert quantiles(two_level, {"group": (2, 5), "obs": (1, 4)}) == {"group": 0, "obs": 0}  # no indicator
    assert quantiles(two_level, {"group": (2, 5), "obs": (1, 4)}, quantiles=4) == {"group": 0, "obs": 4}  # group: no data


def test_invalid_configuration_names_the_field():
    with pytest.raises(ValueError, match="flow_depth"):
        am.NetworkConfig(flow_depth=-1)
    with pytest.raises(ValueError, match="summary="):
        am.NetworkConfig(summary="lstm")
    with pytest.raises(ValueError, match="local_flow="):
        am.NetworkConfig(local_flow="glow")
    with pytest.raises(ValueError, match="quantiles"):
        am.NetworkConfig(quantiles=-1)
