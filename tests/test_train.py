"""Training: online and fixed-budget, one compiled step, non-finite losses handled."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import amortize as am
import amortize.train as train_module
from tests.conftest import two_level

SMALL = am.NetworkConfig(summary_width=16, embed_dim=8, pooled_dim=8, flow_hidden=16, flow_layers=2, flow="affine")


def test_history_records_training_and_validation(quick_two_level):
    history = quick_two_level.history
    assert len(history["loss"]) == 150 and np.isfinite(history["loss"]).all()
    assert history["val_step"][-1] == 150
    assert history["val_loss"][-1] < history["val_loss"][0] - 1.0  # it learns
    assert set(history) >= {"val_loss_global", "val_loss_group", "skipped", "invalid"}
    np.testing.assert_allclose(history["val_loss_global"] + history["val_loss_group"], history["val_loss"], rtol=1e-4)


def test_one_compiled_training_step_for_every_size(monkeypatch):
    traces = []
    original = train_module._loss

    def counting_loss(*args, **kwargs):
        traces.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "_loss", counting_loss)
    amortizer = am.compile(two_level, data=["y"], sizes={"group": (2, 9), "obs": (1, 7)}, network=SMALL)
    # 37 steps in chunks of 10: the last chunk is partial, sizes vary in every batch.
    amortizer.fit(steps=37, batch_size=8, seed=0, progress=False,
                  config=am.TrainConfig(steps_per_call=10, validation_every=10))
    assert len(traces) == 2  # one trace for the training step, one for the validation loss
    assert len(amortizer.history["loss"]) == 37


def test_fixed_simulation_budget_trains_for_epochs():
    amortizer = am.compile(two_level, data=["y"], sizes={"group": (2, 6), "obs": (1, 5)}, network=SMALL)
    history = amortizer.fit(steps=60, batch_size=16, seed=0, simulation_budget=96, progress=False)
    assert len(history["loss"]) == 60 and np.isfinite(history["loss"]).all()
    assert history["val_loss"][-1] < history["val_loss"][0]
    with pytest.raises(ValueError, match="simulation_budget=8 is smaller than batch_size=16"):
        amortizer.fit(steps=2, batch_size=16, simulation_budget=8, progress=False)


def overflowing(n_obs, y=None):
    # Rare simulations have data near the float32 limit: finite, but the network overflows.
    mu = numpyro.sample("mu", dist.Normal(0, 1))
    scale = jnp.where(mu > 1.8, 3e37, 1.0)
    with numpyro.plate("obs", n_obs):
        numpyro.sample("y", dist.Normal(mu, scale), obs=y)


def test_nonfinite_losses_are_skipped_and_reported():
    amortizer = am.compile(overflowing, data=["y"], sizes={"obs": (5, 10)}, network=SMALL)
    with pytest.warns(RuntimeWarning, match=r"updates were skipped because the loss or its gradient was non-finite"):
        history = amortizer.fit(steps=100, batch_size=8, seed=1, progress=False)
    assert 0 < history["skipped"].sum() < 100
    losses = history["loss"][~history["skipped"]]
    assert np.isfinite(losses).all()
    draws, _ = amortizer.draws({"y": np.array([0.1, -0.2, 0.3, 0.0, 0.5])}, 200)
    assert np.isfinite(draws["mu"]).all()


def test_persistently_nonfinite_training_stops_with_a_clear_error():
    amortizer = am.compile(two_level, data=["y"], sizes={"group": (2, 4), "obs": (1, 3)}, network=SMALL)
    with pytest.raises(am.TrainingError, match=r"non-finite for 5 steps in a row.*lower TrainConfig.learning_rate"):
        amortizer.fit(steps=50, batch_size=8, seed=0, progress=False,
                      config=am.TrainConfig(learning_rate=1e38, warmup_steps=0, max_consecutive_nonfinite=5))


@pytest.mark.parametrize("field, value", [("learning_rate", 0.0), ("validation_size", 0), ("steps_per_call", 0)])
def test_train_config_validates(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        am.TrainConfig(**{field: value})
