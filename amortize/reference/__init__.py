"""Gold-standard reference posteriors on the very same program, and comparisons with them.

>>> reference = am.reference.nuts(model, data, num_samples=1000)          # doctest: +SKIP
>>> table = am.reference.compare_posteriors(amortized, reference)         # doctest: +SKIP
"""

from amortize.reference.agreement import compare_posteriors, mmd, summarize_comparison
from amortize.reference.nuts import RHAT_THRESHOLD, ReferenceWarning, nuts

__all__ = ["nuts", "compare_posteriors", "summarize_comparison", "mmd", "ReferenceWarning", "RHAT_THRESHOLD"]
