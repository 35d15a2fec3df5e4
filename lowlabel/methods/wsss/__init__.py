"""Weakly-supervised semantic segmentation: ``mlcam`` (the baseline), ``sipe``, and ``seg`` (the segmentation stage
trained on their pseudo masks); ``common`` (data, optimiser, forward) and ``inference`` (seeds, pseudo masks,
evaluation) hold what they share."""
