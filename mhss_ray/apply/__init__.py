"""Using what a run or a study found: its trained networks and corrected labels (locate.py finds a run's
or a study trial's checkpoint), the training entries whose labels are probably wrong (audit.py), and
predictions on new images (predict.py)."""
