"""Supervised image classification (the pretraining that the methods start from)."""
