"""Weakly-supervised object localization: ``cam`` (the baseline) and ``da_wsol``; ``common`` holds what they share."""
