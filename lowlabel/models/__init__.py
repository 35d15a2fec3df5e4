"""Networks: backbones with timm's feature contract (:mod:`.backbones`) and CAM heads (:mod:`.cam_heads`)."""
