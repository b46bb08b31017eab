"""Old import path of tui.core.plans.engine.journal (the same module object, so patches apply)."""

import sys

from .engine import journal as _module

sys.modules[__name__] = _module
