"""Scenario files for `quanbot demo` (a package only so that the YAML ships with the wheel)."""
