"""mhss-pretrain: formula-driven pretraining (glyphs.py: the images; spec.py: what names a file;
command.py: the training and the cached file)."""
