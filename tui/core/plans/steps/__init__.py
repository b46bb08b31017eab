"""Steps shared by plan kinds: shape.py (a table's indexes and grants as SQL for another table),
shadow.py (building beside a live table: change counter and digest), verify.py (counts,
order-independent checksums, containment), swap.py (DETACH + ATTACH with a pre-validated CHECK,
the DEFAULT's helper CHECK, dropping the detached original), markers.py (pgparts' registry)."""
