"""The pytest plugin: wires rollback/ and checks/ into a pytest session."""
