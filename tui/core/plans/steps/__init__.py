"""Steps shared by plan kinds: the parent's shape (shape.py), pgparts' registry of what a plan
created (markers.py)."""
