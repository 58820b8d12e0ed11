"""fleet bench's checks that need no SSH: the fleet file, the output folder, and two runs into one folder."""

from __future__ import annotations

import pytest

from ddnn_deploy.atomic import writer_lock
from ddnn_deploy.errors import BusyError, UsageError
from ddnn_deploy.fleet import fleet_bench


def _fleet(tmp_path, budget="8"):
    path = tmp_path / "fleet.toml"
    path.write_text(f'[devices.a]\nhost = "local"\ndevice = "x86-cpu"\nbudget_ms = {budget}\n')
    return path


def test_bad_fleet_files_are_one_line(tiny_artifacts, tmp_path):
    for budget, message in (("nan", "must be a finite number"), ('"8"', "must be a number"), ("-1", "greater than 0")):
        with pytest.raises(UsageError, match=message):
            fleet_bench(_fleet(tmp_path, budget), tiny_artifacts, tmp_path / "out")
    (tmp_path / "fleet.toml").write_text('[devices."a/b"]\nhost = "local"\ndevice = "x86-cpu"\nbudget_ms = 8\n')
    with pytest.raises(UsageError, match="they name files"):
        fleet_bench(tmp_path / "fleet.toml", tiny_artifacts, tmp_path / "out")


def test_the_output_folder_is_never_someone_elses_and_one_run_writes_it(tiny_artifacts, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds other files"):
        fleet_bench(_fleet(tmp_path), tiny_artifacts, taken)
    assert (taken / "notes.txt").read_text() == "mine"
    out = tmp_path / "out"
    with writer_lock(out, "the fleet folder"):  # another fleet bench is writing it
        with pytest.raises(BusyError, match="another ddnn-deploy run"):
            fleet_bench(_fleet(tmp_path), tiny_artifacts, out)
