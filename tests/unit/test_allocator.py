"""The entry points' malloc setting: applied once on glibc, and left alone when the user says so."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

PROBE = (
    "import json\n"
    "from grud.cli.allocator import keep_freed_memory\n"
    "first = keep_freed_memory()\n"
    "print(json.dumps([first, keep_freed_memory()]))\n"
)

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"
)


def _probe(**env_changes) -> list:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GRUD_MALLOC"))}
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@glibc_only
def test_thresholds_are_raised_once_per_process():
    assert _probe() == [True, True]


@glibc_only
@pytest.mark.parametrize(
    "env", [{"GRUD_MALLOC": "default"}, {"MALLOC_TRIM_THRESHOLD_": "131072"}, {"MALLOC_MMAP_THRESHOLD_": "131072"}]
)
def test_user_settings_win(env):
    assert _probe(**env) == [False, False]


def test_library_import_leaves_the_allocator_alone():
    """Only the entry points call it: importing grud and building a model must not change malloc."""
    code = (
        "import grud.cli.allocator as a\n"
        "import grud, grud.data, grud.models, grud.tasks\n"
        "from grud.models import preset\n"
        "preset('grud', 3, hidden_size=4)\n"
        "print(a._applied)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"
