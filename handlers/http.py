"""Plain HTTP endpoints: health, the demo pages and the admin dashboard's page."""

from __future__ import annotations

from tornado.web import RequestHandler, StaticFileHandler

from handlers.diagnostics import Diagnostics
from hub.hub import Hub


class HealthHandler(RequestHandler):
    """``GET /healthz``: liveness plus the counters an operator watches."""

    def initialize(self, hub: Hub, diagnostics: Diagnostics) -> None:
        self.hub = hub
        self.diagnostics = diagnostics

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        stats = self.hub.stats()
        status = "ok" if stats["broker"]["connected"] else "degraded"
        self.write({"status": status, **stats, **self.diagnostics.stats()})


class PageHandler(StaticFileHandler):
    """Serves one fixed file of static/ at a friendly URL (``/``, ``/whiteboard``)."""

    def initialize(self, path: str, page: str) -> None:  # type: ignore[override]
        super().initialize(path)
        self.page = page

    def get(self, include_body: bool = True):  # type: ignore[override]
        return super().get(self.page, include_body)

    def head(self):  # type: ignore[override]
        return self.get(include_body=False)


class AdminPageHandler(RequestHandler):
    """``GET /admin``: the dashboard (static/admin.html), told whether the backend
    API is on, so that it can say how to turn it on without a request bound to
    fail; its numbers come from ``/api/stats`` with the operator's key."""

    def initialize(self, path: str, api_on: bool) -> None:
        self.path = path
        self.api_on = api_on

    def get_template_path(self) -> str:
        return self.path

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.render("admin.html", api="on" if self.api_on else "off")
