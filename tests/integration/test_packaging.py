"""The wheel carries the configs (console scripts work from any directory after a plain
install) and the library imports without Hydra."""
from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_library_imports_without_hydra():
    code = (
        "import sys; sys.modules['hydra'] = None; sys.modules['omegaconf'] = None\n"
        "import grud, grud.data, grud.models, grud.tasks.classification, grud.tasks.forecasting\n"
        "from grud.data import masking, read_long_csv\n"
        "from grud.models import preset\n"
        "preset('grud', n_features=3)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


@pytest.mark.slow
def test_plain_wheel_install_composes_configs_from_any_directory(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, timeout=600)
    wheel = next(wheels.glob("grud-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([str(env_dir / "bin" / "grud-train"), "--cfg", "job", "model=gru_mean", "task=forecast"],
                         cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "name: gru_mean" in out.stdout and "history_hours" in out.stdout
    where = subprocess.run([str(py), "-c", "import grud, grud.conf; print(grud.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True, timeout=300)
    assert str(env_dir) in where.stdout
    # the wheel ships the native kernel's C sources, and the installed package builds them
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert {"grud/models/fast/native/gru_kernel.c", "grud/models/fast/native/gru_kernel_body.h"} <= set(names)
    from grud.models.fast.native.build import _compiler

    if _compiler() is not None:
        status = subprocess.run([str(py), "-c", "from grud.models.fast import native; print(native.status())"],
                                cwd=elsewhere, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "GRUD_KERNEL_CACHE": str(tmp_path / "kernels")})
        assert status.stdout.strip() == "on", status.stdout + status.stderr
