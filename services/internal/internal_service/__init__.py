"""The internal service: says who it is and who called it; reachable only on the Docker network.

``app.create_app`` builds it; ``settings.Settings`` is read without importing Flask (the probe).
"""
