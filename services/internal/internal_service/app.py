"""The internal service's Flask app."""

from __future__ import annotations

from flask import Flask

from c2c_http.app import json_app
from internal_service import views
from internal_service.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    app = json_app(__name__, service="internal")
    app.config["SETTINGS"] = settings or Settings.from_env()
    app.register_blueprint(views.bp)
    return app
