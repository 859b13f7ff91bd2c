"""Run by .ci/wheel_check from outside the source tree against the installed wheel."""

import os
import sys
import tempfile

import numpy as np

import amortize as am
from amortize.models import conjugate_normal

assert am.__file__.startswith(sys.prefix), am.__file__  # the wheel in this venv, not the source tree
amortizer = am.compile(conjugate_normal.model, data=["y"], sizes={"group": (2, 4), "obs": (1, 3)},
                       network=am.NetworkConfig(summary_width=16, flow_hidden=16, flow_layers=1))
amortizer.fit(steps=20, batch_size=16, progress=False)
data = {"y": [np.array([0.1, 0.2]), np.array([-0.3])]}
tree = amortizer.sample(data, 200, seed=0)
path = os.path.join(tempfile.mkdtemp(), "smoke.amortizer")
amortizer.save(path)
again = am.load(path).sample(data, 200, seed=0)
np.testing.assert_allclose(again["posterior"]["mu"].values, tree["posterior"]["mu"].values, rtol=1e-5)
print(f"wheel smoke test passed: amortize {am.__version__} from {os.path.dirname(am.__file__)}")
