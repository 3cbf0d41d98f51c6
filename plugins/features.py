"""The harness's features: each a pytest plugin implementing the harness's hooks (plugins/hookspecs.py)
and declaring its own options. Adding a feature is one plugin file and one line here; the core
(plugins/harness.py and the modules it imports) never imports a feature.

pytest registers these when it registers plugins/harness.py (its ``pytest_plugins``), so
``-p no:rollback`` leaves them out with the core. The order is the order of options in ``--help``.
"""

pytest_plugins = (
    "rollback_harness.plugins.locks",
    "rollback_harness.plugins.incident",
    "rollback_harness.plugins.database",
    "rollback_harness.plugins.fleet",
    "rollback_harness.plugins.gates",
    "rollback_harness.plugins.notifications",
    "rollback_harness.plugins.signing",
)
