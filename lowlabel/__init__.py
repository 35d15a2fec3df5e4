"""lowlabel: label-efficient visual localization on shared parts."""

__version__ = "0.1.0"
