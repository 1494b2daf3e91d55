"""A real Mosquitto broker for tests and benches: a free 127.0.0.1 port, a temp config, stopped
at the end. Debian: ``apt-get install mosquitto`` (it need not run as a service)."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """``mosquitto -c CONF`` on 127.0.0.1:PORT; restartable on the same port (persistence on,
    so retained messages and queued QoS 1 messages of persistent sessions survive a stop)."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "") -> None:
        self.exe = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen | None = None
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> Mosquitto:
        if self.exe is None:
            raise FileNotFoundError("mosquitto not installed (apt-get install mosquitto)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            f"user {getpass.getuser()}\n"  # as root it would switch to user "mosquitto"
            f"{self.extra_conf}\n",
            encoding="utf-8",
        )
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.exe, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-1000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"mosquitto did not listen on 127.0.0.1:{self.port}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM (mosquitto saves its persistence file), SIGKILL if it does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout_s)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
