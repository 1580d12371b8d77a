"""Load: 16 concurrent clients x 1,000 drives on two rigs of one server process. Nothing lost, nothing
duplicated, every reply matched to its request (echo rigs return each request's unique tag).
Throughput and latency are figures of the ``load`` bench section, not asserted here."""
import pytest

from nado.bench.load import run_load

pytestmark = pytest.mark.e2e   # starts processes or runs for seconds (make test-fast skips it)


@pytest.mark.slow
def test_sixteen_clients_thousand_drives_each():
    r = run_load(clients=16, requests=1000)
    assert r["errors"] == []
    assert r["replies"] == r["drives_sent"] == 16_000            # nothing lost
    assert r["drives_executed"] == 16_000                         # nothing executed twice
    assert r["per_rig_executed"] == {"a": 8000, "b": 8000}
    assert r["mismatched"] == 0                                   # every reply is its request's
