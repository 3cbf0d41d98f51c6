"""The rollback engine: config, versions, platform drivers, journal and evidence.

Plain Python: nothing here imports pytest, so the engine can be driven from any tool.
"""
