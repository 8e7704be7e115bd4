"""Training one configuration: the trainer loop, models, metrics, checkpoints and run folders. Never imports Ray
(tests/test_layers.py): Ray Train calls into it from tune/driver.py."""
