"""Wiring only: create the app, register blueprints, schedules and queue handlers."""

from chalice import Chalice

from chalicelib.api import audit, connections, http, meta, openapi, providers

app = Chalice(app_name="llm-connections")
app.debug = False
app.api.binary_types = []

http.install(app)
app.register_blueprint(meta.bp)
app.register_blueprint(providers.bp)
app.register_blueprint(connections.bp)
app.register_blueprint(audit.bp)
openapi.bind(app)
