"""One call that validates a trained amortizer and writes a report folder.

``validate(amortizer, "report/", data=..., reference=...)`` writes

* ``sbc.png``, ``recovery.png``: simulation-based calibration and recovery on
  held-out simulations (always);
* ``ppc.png``, ``pooling.png``, ``logo.png``: posterior predictive checks,
  pooling factors and leave-one-group-out CV on ``data`` (when given);
* ``series.png``: for a program with an ordered level, the one-step-ahead
  predictive of each series against its observed values (when ``data`` is given);
* ``comparison.png`` and ``comparison.csv``: amortized vs a reference
  posterior (e.g. :func:`amortize.reference.nuts`) on the same data;
* ``<figure>.json`` next to every PNG with the numbers it shows, ``summary.json``
  with every table, and ``report.md``, a short readable summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt

from amortize.diagnostics import validation_figures as figures
from amortize.diagnostics.calibration import Calibration, calibrate
from amortize.diagnostics.logo import logo as leave_one_group_out
from amortize.diagnostics.predictive import pooling_factors, posterior_predictive

__all__ = ["validate", "ValidationReport"]


@dataclass
class ValidationReport:
    """What :func:`validate` computed; every part is also on disk under ``path``.

    Attributes
    ----------
    path : Path
    calibration : Calibration
    posterior : xarray.DataTree or None
        Amortized posterior of ``data`` with ``posterior_predictive``.
    pooling : xarray.Dataset or None
    comparison : pandas.DataFrame or None
        Per-parameter comparison with the reference.
    logo : ELPDDataLOOKFold or None
    """

    path: Path
    calibration: Calibration
    posterior: Any = None
    pooling: Any = None
    comparison: Any = None
    logo: Any = None
    files: list = field(default_factory=list)

    @property
    def sbc_passed(self) -> bool:
        return self.calibration.passed


def _table_markdown(table, floatfmt: str = ".3f") -> str:
    columns = list(table.columns)
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for index, row in table.iterrows():
        cells = []
        for c in columns:
            value = row[c]
            cells.append(format(value, floatfmt) if isinstance(value, float) else str(value))
        lines.append(f"| {index} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def validate(amortizer, path, *, data: Mapping[str, Any] | None = None, index=None, coords=None,
             reference=None, num_datasets: int = 200, sbc_draws: int = 100, num_samples: int = 2000,
             logo: bool = False, logo_samples: int = 2000, seed: int = 0) -> ValidationReport:
    """Validate a trained amortizer and write a report folder.

    Parameters
    ----------
    amortizer : Amortizer
    path : str or Path
        Folder to write (created if needed).
    data : mapping, optional
        An observed data set: enables posterior predictive checks, pooling
        factors, LOGO-CV and the comparison with ``reference``.
    index, coords : as for :meth:`Amortizer.sample`.
    reference : xarray.DataTree, optional
        A reference posterior of the same data in amortize's layout
        (:func:`amortize.reference.nuts`); its convergence flags are reported.
    num_datasets, sbc_draws : int
        Held-out simulations and posterior draws per simulation for SBC.
    num_samples : int
        Posterior draws for ``data``.
    logo : bool
        Also run leave-one-group-out CV on ``data``.
    logo_samples : int
    seed : int

    Returns
    -------
    ValidationReport
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    report = ValidationReport(out, calibrate(amortizer, num_datasets, sbc_draws, seed))
    summary: dict[str, Any] = {}

    def write(name, data_dict, plot):
        (out / f"{name}.json").write_text(json.dumps(data_dict, indent=1))
        fig = plot(data_dict, out / f"{name}.png")
        plt.close(fig)
        report.files += [f"{name}.png", f"{name}.json"]

    sbc_table = report.calibration.sbc_table()
    recovery_table = report.calibration.recovery_table()
    write("sbc", figures.sbc_figure_data(report.calibration), figures.plot_sbc)
    write("recovery", figures.recovery_figure_data(report.calibration), figures.plot_recovery)
    summary["sbc"] = json.loads(sbc_table.to_json(orient="index"))
    summary["recovery"] = json.loads(recovery_table.to_json(orient="index"))
    md = ["# Validation report\n",
          f"Held-out simulations: {report.calibration.num_datasets}, {report.calibration.num_draws} "
          f"posterior draws each.\n",
          f"## Simulation-based calibration: {'all parameters pass' if sbc_table['passed'].all() else 'SOME PARAMETERS FAIL'}\n",
          _table_markdown(sbc_table), "\n![SBC](sbc.png)\n",
          "## Recovery and contraction\n", _table_markdown(recovery_table), "\n![recovery](recovery.png)\n"]

    if data is not None:
        tree = amortizer.sample(data, num_samples, seed, index=index, coords=coords)
        tree = posterior_predictive(tree, amortizer, seed)
        report.posterior = tree
        ppc = figures.ppc_figure_data(tree, amortizer, seed=seed)
        write("ppc", ppc, figures.plot_ppc)
        summary["ppc"] = {n: {"p_mean": d["p_mean"], "p_sd": d["p_sd"]} for n, d in ppc.items()}
        md += ["## Posterior predictive checks\n",
               "\n".join(f"- `{n}`: p(mean) = {d['p_mean']:.2f}, p(sd) = {d['p_sd']:.2f}" for n, d in ppc.items()),
               "\n![PPC](ppc.png)\n"]
        if amortizer.graph.ordered_level is not None:
            series = figures.series_figure_data(posterior_predictive(tree, amortizer, seed, one_step=True), amortizer)
            write("series", series, figures.plot_series)
            summary["series"] = {n: {"coverage_50": d["coverage_50"], "coverage_90": d["coverage_90"]}
                                 for n, d in series["sites"].items()}
            md += [f"## One-step-ahead predictive along `{series['level']}`\n",
                   "\n".join(f"- `{n}`: {d['coverage_50']:.0%} of observations in the central 50% interval, "
                             f"{d['coverage_90']:.0%} in the 90% interval" for n, d in series["sites"].items()),
                   "\n![series](series.png)\n"]
        has_local = bool(amortizer.graph.local_continuous_latents)
        reference_pooling = None
        if reference is not None:
            from amortize.reference.agreement import compare_posteriors, summarize_comparison

            table = compare_posteriors(tree, reference, seed=seed)
            report.comparison = table
            table.to_csv(out / "comparison.csv")
            report.files.append("comparison.csv")
            write("comparison", figures.comparison_figure_data(tree, reference, table), figures.plot_comparison)
            site_summary = summarize_comparison(table)
            summary["comparison"] = {"reference": dict(table.attrs),
                                     "sites": json.loads(site_summary.to_json(orient="index"))}
            flag = ("" if table.attrs["reference_converged"] else
                    f"\n**The reference did not converge** (max R-hat {table.attrs['reference_max_rhat']:.3f}, "
                    f"{table.attrs['reference_divergences']} divergences): treat this comparison with care.\n")
            md += ["## Comparison with the reference posterior\n", flag,
                   "Worst parameter per site (targets: |Δmean| ≤ 0.1 reference sd, |sd ratio − 1| ≤ 0.1):\n",
                   _table_markdown(site_summary), "\n![comparison](comparison.png)\n"]
            if has_local:
                reference_pooling = pooling_factors(reference, amortizer)
        if has_local:
            report.pooling = pooling_factors(tree, amortizer)
            write("pooling", figures.pooling_figure_data(report.pooling, reference_pooling), figures.plot_pooling)
            summary["pooling"] = {n: {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}
                                  for n, v in report.pooling.data_vars.items()}
            md += ["## Pooling factors\n",
                   "\n".join(f"- `{n}`: mean {s['mean']:.2f} (range {s['min']:.2f} to {s['max']:.2f})"
                             for n, s in summary["pooling"].items()),
                   "\n![pooling](pooling.png)\n"]
        if logo:
            report.logo = leave_one_group_out(amortizer, data, num_samples=logo_samples, seed=seed,
                                              index=index, coords=coords)
            write("logo", figures.logo_figure_data(report.logo), figures.plot_logo)
            summary["logo"] = {"elpd": report.logo.elpd, "se": report.logo.se, "p": report.logo.p,
                               "groups": report.logo.n_data_points, "warning": report.logo.warning}
            md += ["## Leave-one-group-out CV\n",
                   f"elpd = {report.logo.elpd:.2f} ± {report.logo.se:.2f}, p = {report.logo.p:.2f} "
                   f"over {report.logo.n_data_points} groups.\n", "![LOGO](logo.png)\n"]
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "report.md").write_text("\n".join(md) + "\n")
    report.files += ["summary.json", "report.md"]
    return report
