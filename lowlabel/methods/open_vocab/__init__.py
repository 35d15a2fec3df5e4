"""Open-vocabulary localization: the CLIP teacher (``clip``), RegionCLIP's region-text pretraining and the OVD
transfer, with what they share in :mod:`lowlabel.methods.open_vocab.common`."""
