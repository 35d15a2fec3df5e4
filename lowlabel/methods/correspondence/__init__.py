"""Dense correspondence from video: ContrastCorr and the label-propagation evaluation it is scored with."""
