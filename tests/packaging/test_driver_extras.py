"""A driver whose client library is an uninstalled extra: one clear error naming what to install."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback_harness.rollback import targets
from rollback_harness.rollback.errors import ConfigError

CONFIG = """
[service]
name = "shop"
base_url = "http://127.0.0.1:9"

[targets.cloud]
kind = "fakecloud"
cluster = "prod"
"""

# A driver module as the real ones are written: its client library imported at the top.
DRIVER = """
import fakecloud_client_not_installed  # the driver's client: an extra nobody installed here

class FakeCloudTarget:
    pass
"""


@pytest.fixture
def fake_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Registers kind 'fakecloud', whose module imports a package that is not installed."""
    folder = tmp_path / "drivers"
    folder.mkdir()
    (folder / "fakecloud_driver.py").write_text(DRIVER)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setitem(targets.DRIVERS, "fakecloud", "fakecloud_driver:FakeCloudTarget")
    monkeypatch.setitem(targets.EXTRAS, "fakecloud", "fakecloud")
    return "fakecloud"


def test_missing_client_names_kind_module_and_extra(fake_driver: str) -> None:
    with pytest.raises(ConfigError) as raised:
        targets.driver_class(fake_driver, "rollback.toml: targets.cloud.kind")

    assert str(raised.value) == (
        "rollback.toml: targets.cloud.kind = 'fakecloud': the fakecloud driver needs the Python module "
        "'fakecloud_client_not_installed', which is not installed; "
        "install it with: pip install 'pytest-rollback-harness[fakecloud]'"
    )


def test_a_driver_without_an_extra_of_its_own_points_at_all(fake_driver: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(targets.EXTRAS, "fakecloud")

    with pytest.raises(ConfigError, match=r"pip install 'pytest-rollback-harness\[all\]'$"):
        targets.driver_class(fake_driver, "targets.cloud.kind")


def test_an_installed_but_unusable_client_says_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "drivers"
    folder.mkdir()
    (folder / "oldcloud_driver.py").write_text("from json import no_such_name\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setitem(targets.DRIVERS, "oldcloud", "oldcloud_driver:OldCloudTarget")

    with pytest.raises(ConfigError) as raised:
        targets.driver_class("oldcloud", "targets.cloud.kind")

    message = str(raised.value)
    assert "cannot import name 'no_such_name'" in message
    assert message.endswith("pip install --upgrade 'pytest-rollback-harness[all]'")


def test_a_missing_module_of_our_own_is_not_blamed_on_a_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(targets.DRIVERS, "ghost", "rollback_harness.rollback.targets.ghost:GhostTarget")

    with pytest.raises(ModuleNotFoundError):
        targets.driver_class("ghost", "targets.cloud.kind")


def test_every_extra_named_by_the_registry_exists_in_pyproject() -> None:
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    assert set(targets.EXTRAS.values()) <= set(extras)
    assert {"kubernetes", "swarm", "all"} <= set(extras)
    assert not any(dep.startswith(("kubernetes", "docker")) for dep in pyproject["project"]["dependencies"])


def test_pytest_run_naming_the_driver_is_a_usage_error(pytester: pytest.Pytester, fake_driver: str) -> None:
    pytester.path.joinpath("rollback.toml").write_text(CONFIG)

    result = pytester.runpytest("-p", "no:cacheprovider", "--rollback-to", "v1.2.9", "--rollback-dry-run")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: */rollback.toml: targets.cloud.kind = 'fakecloud': the fakecloud driver needs the Python module "
            "'fakecloud_client_not_installed', which is not installed; "
            "install it with: pip install 'pytest-rollback-harness[[]fakecloud[]]'"
        ]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not list(pytester.path.glob("reports/*"))
