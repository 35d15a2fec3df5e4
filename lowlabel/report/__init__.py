"""The static HTML report (``lowlabel report``) and what it reads.

* :mod:`~lowlabel.samples`: what a method's ``evaluate`` writes for the report
  (``per_image.csv``, ``samples/<id>.npz`` via ``save_sample``).
* :mod:`~lowlabel.report.runs`: reading run folders; grouping runs of one config over seeds.
* :mod:`~lowlabel.report.comparisons`: ``BASELINES`` (method -> baseline) and ``HEADLINE_METRICS``,
  the only place that names methods.
* :mod:`~lowlabel.report.tables`: summary (mean ± std, best in bold), headline and per-class tables; how a method
  reads against its baseline (one seed: "not a comparison"; else ahead / level / behind by twice the seed std).
* :mod:`~lowlabel.report.results`: study result files (``benchmarks/results/*.json``), the README's tables.
* :mod:`~lowlabel.report.references`: ``--reference DIR``, the result-file rows of a comparison's method and baseline.
* :mod:`~lowlabel.report.figures`: training curves from ``logs/metrics.csv`` (matplotlib, Agg).
* :mod:`~lowlabel.report.panels`: ``PANELS``, one drawing function per sample ``kind``.
* :mod:`~lowlabel.report.html`: ``write_report(run_dirs, out_dir, reference=None)``, the page itself.

A new method shows its pictures by (1) calling ``save_sample(out_dir, image_id, "<kind>", image,
**arrays)`` in ``evaluate`` and (2), for a new kind, adding ``PANELS["<kind>"] = draw_<kind>`` where
``draw_<kind>(sample) -> Panel`` returns titled RGB tiles, a legend and a caption. Its baseline
goes in ``BASELINES``.
"""
