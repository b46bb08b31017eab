"""The wizard's screen classes, for the ids [console.keymap] can rebind (app.known_binding_ids)."""

from __future__ import annotations

from .form import MigrateFormScreen
from .layout_edit import LayoutEditScreen
from .picker import MigratePickerScreen
from .wizard import MigrateWizardScreen

SCREENS = (MigratePickerScreen, MigrateFormScreen, MigrateWizardScreen, LayoutEditScreen)
