"""The Textual console: screens, widgets and styles. It displays what tui.core computes.

A regular package (not a namespace one) so the import contracts in pyproject.toml can see it.
"""
