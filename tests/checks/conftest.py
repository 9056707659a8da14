"""Fixtures shared by the check tests: the planted-shortcut image data and models (see image_fixtures.py)."""

from tests.checks.image_fixtures import clean_result, image_dir, shortcut_result  # noqa: F401 - fixtures
