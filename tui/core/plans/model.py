"""Old import path of tui.core.plans.engine.model (the same module object, so patches apply)."""

import sys

from .engine import model as _module

sys.modules[__name__] = _module
