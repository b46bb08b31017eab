"""Old import path of tui.core.plans.steps.markers (the same module object)."""

import sys

from .steps import markers as _module

sys.modules[__name__] = _module
