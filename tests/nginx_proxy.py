"""A real nginx (Debian's package) in front of hub nodes, as users deploy it:
WebSocket upgrades proxied round-robin to every node, on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from tests.redis_server import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  upstream hub {{ {servers} }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://hub;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_read_timeout 1h;
    }}
  }}
}}
"""


class NginxProxy:
    """nginx on 127.0.0.1:``port`` proxying to the given backend ports."""

    def __init__(self, backends: list[int]) -> None:
        if not os.path.exists(NGINX):
            pytest.skip("nginx is missing (apt-get install nginx)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="wshub-nginx-")
        servers = " ".join(f"server 127.0.0.1:{p};" for p in backends)
        config = os.path.join(self.dir, "nginx.conf")
        with open(config, "w") as out:
            out.write(CONFIG.format(dir=self.dir, servers=servers, port=self.port))
        self.proc = subprocess.Popen(
            [NGINX, "-p", self.dir, "-c", config],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nginx did not start:\n" + self.error_log()) from None
                time.sleep(0.02)

    def error_log(self) -> str:
        try:
            with open(os.path.join(self.dir, "error.log")) as log:
                return log.read()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
