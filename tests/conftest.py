"""Shared fixtures: serving rigs in-process through the bus."""
from __future__ import annotations

import itertools

import pytest

from bridge import RigClient, RigServer

_ids = itertools.count()


@pytest.fixture
def served():
    """Serve rigs on a fresh ``inproc://`` endpoint; return a client factory.

    ``served(rigs, name="rig", *, timeout_s=60.0, retries=1)``: ``rigs`` is a ``{name: rig}``
    dict or a single rig (served as ``name``); the client drives ``name``. Every server and
    client is closed (linger 0) after the test.
    """
    servers, clients = [], []

    def make(rigs, name="rig", *, timeout_s=60.0, retries=1):
        if not isinstance(rigs, dict):
            rigs = {name: rigs}
        ep = f"inproc://test-served-{next(_ids)}"
        servers.append(RigServer(rigs, ep).start())
        clients.append(RigClient(ep, name, timeout_s=timeout_s, retries=retries))
        return clients[-1]

    yield make
    for c in clients:
        c.close()
    for s in servers:
        s.close()
