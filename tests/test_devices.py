"""Data-parallel training over several devices (two CPU cores presented as devices)."""

import json
import os
import subprocess
import sys

import jax
import pytest

import amortize as am
from amortize.devices import training_devices

# JAX fixes its CPU device count when its backend starts, so the two-device
# runs happen in a fresh interpreter.
SCRIPT = r"""
import json, sys
import amortize as am
am.use_cpu_cores(2)
import jax, numpy as np
from flax import nnx
from amortize.models import hierarchical_normal

SMALL = am.NetworkConfig(summary_width=16, embed_dim=8, pooled_dim=8, flow_hidden=16, flow_layers=2, flow="affine")
out = {"devices": len(jax.devices())}

def fresh(sizes):
    return am.compile(hierarchical_normal.model, data=["y"], sizes=sizes, network=SMALL)

# The same fixed simulations, split over two devices or not: the same losses and weights.
runs = {}
for devices in (1, 2):
    amortizer = fresh({"group": (2, 8), "obs": (1, 6)})
    config = am.TrainConfig(devices=devices, steps_per_call=3, validation_size=32, pilot_size=128)
    history = amortizer.fit(steps=6, batch_size=32, seed=0, progress=False, simulation_budget=64, config=config)
    weights = np.concatenate([np.ravel(x) for x in jax.tree.leaves(nnx.state(amortizer.network, nnx.Param))])
    runs[devices] = (history["loss"].tolist(), history["val_loss"].tolist(), weights)
out["loss"] = [runs[1][0], runs[2][0]]
out["val_loss"] = [runs[1][1], runs[2][1]]
out["weights_max_abs_diff"] = float(np.max(np.abs(runs[1][2] - runs[2][2])))
out["weights_max_abs"] = float(np.max(np.abs(runs[1][2])))

# Online, packed (32 data sets x 50 x 30 slots per device): each device simulates its own half.
amortizer = fresh({"group": (2, 50), "obs": (1, 30)})
history = amortizer.fit(steps=60, batch_size=64, seed=0, progress=False,
                        config=am.TrainConfig(steps_per_call=20, validation_size=64, pilot_size=256))
out["online_val_loss"] = history["val_loss"].tolist()
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def two_devices():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def test_two_devices_train_like_one_on_the_same_simulations(two_devices):
    assert two_devices["devices"] == 2
    one, two = two_devices["loss"]
    # Each device's mean over its half of the batch, averaged: the batch mean, up to float32 summation order.
    assert one == pytest.approx(two, rel=1e-4, abs=1e-4)
    assert two_devices["val_loss"][0] == pytest.approx(two_devices["val_loss"][1], rel=1e-4, abs=1e-4)
    assert two_devices["weights_max_abs_diff"] < 1e-4 * max(1.0, two_devices["weights_max_abs"])


def test_two_devices_train_online_and_packed(two_devices):
    val = two_devices["online_val_loss"]
    assert all(abs(v) < 1e6 for v in val)  # finite
    assert val[-1] < val[0] - 1.0  # 60 steps learn: an untrained network scores the two-level posterior far worse


def test_device_counts():
    one = len(jax.local_devices())
    assert training_devices(None, 33) == jax.local_devices()[:1] or one > 1
    with pytest.raises(am.TrainingError, match="devices=.*has"):
        training_devices(one + 1, 64)
    if one == 1:
        with pytest.raises(am.TrainingError, match="before the first JAX computation"):
            jax.numpy.zeros(1).block_until_ready()
            am.use_cpu_cores(2)
