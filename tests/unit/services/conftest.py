from tests.integration.upstream_stub import stub_upstream

__all__ = ["stub_upstream"]  # a fixture: pytest finds it in this conftest
