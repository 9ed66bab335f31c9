"""store/report_figures.py borrows spare connections per pool: one Database's reports never take
another's (the figures themselves are compared with a brute-force recount in test_stats.py)."""
from store.report_figures import SPARE_CONNECTIONS, _Spare


class Pool:  # (any object a weak reference can point at stands for a pool here)
    pass


def test_spare_connections_are_counted_per_pool() -> None:
    first, second = Pool(), Pool()
    assert _Spare.take(first, SPARE_CONNECTIONS)
    assert not _Spare.take(first, 1)  # this pool's spares are all out...
    assert _Spare.take(second, 2)  # ...which leaves another Database's alone
    _Spare.give_back(first, SPARE_CONNECTIONS)
    assert _Spare.take(first, 2)
    _Spare.give_back(first, 2)
    _Spare.give_back(second, 2)
    assert _Spare.in_use[first] == _Spare.in_use[second] == 0
    del first
    assert len([pool for pool in _Spare.in_use if isinstance(pool, Pool)]) == 1  # a pool gone takes its count along
