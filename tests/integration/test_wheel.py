"""The built wheel, installed far from the checkout with the locked dependencies, serves.

The wheel is built once for the module and installed into a new virtual
environment under the temporary directory, with the runtime packages that
``uv.lock`` pins (hashes checked). Every command then runs in that directory,
with no path of the checkout on ``sys.path``: what works there works for a
user who installed the package.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import jwt
import pytest
from websockets.asyncio.client import connect

from supervisor import __version__
from supervisor.admin.page import PAGE_FILES
from supervisor.config.load import PROFILES
from tests.integration.harness import ROOT, DaemonProcess

pytestmark = pytest.mark.timeout(240)

SECRET = "w" * 32


def uv() -> str:
    """The uv that scripts/_venv.sh installs (.uv/bin/uv), else one on PATH."""
    local = ROOT / ".uv" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    assert found, "uv is missing: scripts/test installs it into .uv/"
    return found


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=180, env=env or clean_env()
    )
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def clean_env() -> dict[str, str]:
    """This environment without anything that points into the checkout or configures us."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    return {
        k: v
        for k, v in os.environ.items()
        if k not in drop and not k.startswith(("WS_SUPERVISOR_", "WSS_"))
    }


@attrs.frozen
class Install:
    wheel: Path
    venv: Path
    home: Path  # the working directory, far from the checkout

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    home = tmp_path_factory.mktemp("far-away")
    dist = home / "dist"
    run([uv(), "build", "--wheel", "--out-dir", str(dist), str(ROOT)], cwd=home)
    (wheel,) = dist.glob("ws_supervisor-*.whl")
    requirements = home / "requirements.txt"
    locked = run(
        [uv(), "export", "--frozen", "--no-emit-project", "--format", "requirements-txt"],
        cwd=ROOT,
    )
    requirements.write_text(locked)
    venv = home / "venv"
    run([uv(), "venv", "--python", sys.executable, str(venv)], home)
    pip = [uv(), "pip", "install", "--python", str(venv / "bin" / "python")]
    run([*pip, "--require-hashes", "-r", str(requirements)], home)
    run([*pip, "--no-deps", str(wheel)], home)
    yield Install(wheel, venv, home)


def test_the_wheel_carries_every_profile_as_the_checkout_has_it(install: Install) -> None:
    with zipfile.ZipFile(install.wheel) as wheel:
        for name in PROFILES:
            shipped = wheel.read(f"supervisor/config/profiles/{name}.toml")
            assert shipped == (ROOT / "config" / f"{name}.toml").read_bytes(), name


def test_the_wheel_carries_the_live_page_as_the_checkout_has_it(install: Install) -> None:
    with zipfile.ZipFile(install.wheel) as wheel:
        for name, _ in PAGE_FILES.values():
            shipped = wheel.read(f"supervisor/admin/ui/{name}")
            assert shipped == (ROOT / "supervisor" / "admin" / "ui" / name).read_bytes(), name


def test_the_installed_package_is_imported_from_the_new_environment(install: Install) -> None:
    where = run(
        [install.bin("python"), "-c", "import supervisor, actors; print(supervisor.__file__)"],
        install.home,
    )
    assert where.strip().startswith(str(install.venv)), where
    assert str(ROOT) not in where


def test_the_installed_command_prints_its_version_and_a_profile(install: Install) -> None:
    assert run([install.bin("ws-supervisor"), "--version"], install.home).strip() == (
        f"ws-supervisor {__version__}"
    )
    printed = run([install.bin("ws-supervisor"), "profile", "production"], install.home)
    assert printed == (ROOT / "config" / "production.toml").read_text(encoding="utf-8")


def test_load_profile_works_in_the_installed_package(install: Install) -> None:
    code = (
        "import json; from supervisor.config.load import load_profile; "
        "print(json.dumps({n: load_profile(n, env={}).quota.max_managers_per_user "
        "for n in ('production', 'staging', 'ci', 'dev')}))"
    )
    quotas = json.loads(run([install.bin("python"), "-c", code], install.home))
    assert quotas == {"production": 20, "staging": 10, "ci": 5, "dev": 20}


@pytest.mark.asyncio
@pytest.mark.parametrize("profile", PROFILES)
async def test_every_bundled_profile_serves_a_real_client_from_the_installed_wheel(
    install: Install, profile: str
) -> None:
    env = {
        **clean_env(),
        "WSS_JWT_SECRET": SECRET,
        "WS_SUPERVISOR_SERVER_HOST": "127.0.0.1",
        "WS_SUPERVISOR_ADMIN_HOST": "127.0.0.1",
    }
    daemon = DaemonProcess(
        None,
        env=env,
        argv=[install.bin("ws-supervisor"), "serve", "--profile", profile],
        cwd=install.home,
    )
    try:
        daemon.wait_ready()
        token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, SECRET, "HS256")
        headers = {"Authorization": f"Bearer {token}"}
        async with connect(daemon.url("alice"), additional_headers=headers, open_timeout=10) as ws:
            welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome" and welcome["user_id"] == "alice", welcome
        for path, (name, _) in PAGE_FILES.items():  # the page, from the wheel, with no token
            shipped = (ROOT / "supervisor" / "admin" / "ui" / name).read_text(encoding="utf-8")
            assert daemon.get(path) == (200, shipped), path
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.output()
        assert "Traceback" not in daemon.output()
    finally:
        daemon.kill()
