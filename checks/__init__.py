"""The checks: plain functions that probe a live service and return a CheckResult.

Usable without pytest; the plugin in plugins/ turns results into gate outcomes.
"""
