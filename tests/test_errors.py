from bdscan.cli._compat import UsageError as ClickUsage
from bdscan.errors import (ArchitectureError, DataError, ExitCode, ModelLoadError, UnsupportedModelError,
                           exit_code_for)


def test_exit_code_table():
    assert exit_code_for(DataError("x")) == 2
    assert exit_code_for(ModelLoadError("x")) == 2
    assert exit_code_for(UnsupportedModelError("x")) == 3
    assert exit_code_for(ArchitectureError("x")) == 4
    assert exit_code_for(ClickUsage("bad flag")) == 4
    assert exit_code_for(KeyboardInterrupt()) == 130
    assert exit_code_for(RuntimeError("x")) == 2
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 130]
