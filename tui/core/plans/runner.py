"""Old import path of tui.core.plans.engine.runner (the same module object, so patches apply)."""

import sys

from .engine import runner as _module

sys.modules[__name__] = _module
