"""Package discovery only; everything else is in pyproject.toml.

Every subpackage of ``amortize/`` is found automatically, so a new one cannot
be left out of the wheel; the bundled case-study programs in ``models/``
install as ``amortize.models``.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["amortize", "amortize.*"]) + ["amortize.models"],
    package_dir={"amortize.models": "models"},
)
