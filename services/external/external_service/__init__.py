"""The external service: the published one; asks internal over the Docker network and relays.

``app.create_app`` builds it; ``settings.Settings`` is read without importing Flask (the probe).
"""
