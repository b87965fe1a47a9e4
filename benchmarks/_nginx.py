"""Debian's nginx with its njs module as parity's mirror (``deploy/nginx/``), started on loopback with a
temporary configuration: found, or installed with ``apt-get`` (as the browser tests install Chromium).

>>> "js_import" in mirror_config(Path("/tmp/x"), upstream="127.0.0.1:1", listen="127.0.0.1:2", log=Path("/tmp/l"))
True
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "nginx"
PACKAGES = ("nginx-light", "libnginx-mod-http-js")
JS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")


def ensure_nginx() -> str | None:
    """``None`` when nginx and its js module are there (installed now if need be); else why not."""
    if shutil.which("nginx") and JS_MODULE.exists():
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "nginx is not installed and apt-get cannot run here (not Debian, or not root)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends", *PACKAGES]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    if run.returncode != 0:  # a fresh image has no package lists
        subprocess.run(["apt-get", "-q", "update"], env=env, capture_output=True, timeout=600)
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    if run.returncode != 0:
        raise RuntimeError(f"apt-get install {' '.join(PACKAGES)} failed: {run.stdout[-2000:]}{run.stderr[-2000:]}")
    return None


def mirror_config(tmp: Path, *, upstream: str, listen: str, log: Path) -> str:
    """A whole nginx.conf: ``deploy/nginx/parity-mirror.conf`` with this run's ports and paths, one worker."""
    site = (DEPLOY / "parity-mirror.conf").read_text()
    site = (site.replace("/etc/nginx/parity_mirror.js", str(DEPLOY / "parity_mirror.js"))
            .replace("127.0.0.1:8000", upstream).replace("127.0.0.1:8080", listen)
            .replace("/var/log/nginx/parity-mirror.jsonl", str(log)))  # fmt: skip
    temps = "\n".join(f"    {k}_temp_path {tmp}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (
        f"load_module {JS_MODULE};\nworker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\n"
        f"events {{ worker_connections 1024; }}\nhttp {{\n    access_log off;\n{temps}\n{site}\n}}\n"
    )


def start_mirror(tmp: Path, *, upstream: str, listen: str, log: Path) -> subprocess.Popen[bytes]:
    """nginx in the foreground with :func:`mirror_config`; returns once it answers on ``listen``."""
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(mirror_config(tmp, upstream=upstream, listen=listen, log=log))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited {proc.returncode}: {(tmp / 'error.log').read_text()[-2000:]}")
        try:
            httpx.get(f"http://{listen}/", timeout=2)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("nginx did not start")
