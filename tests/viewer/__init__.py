"""Viewer tests. A package, because tests/cli has a test_app.py too."""
