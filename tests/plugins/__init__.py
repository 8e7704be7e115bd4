"""Plugins written as a contributor would write them, one file each, outside the package
(tests/test_plugins.py names them in MHSS_PLUGINS)."""
