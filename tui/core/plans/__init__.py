"""Layout changes as plans: the engine (engine/: model, runner, journal, describe), the
plan-kind protocol (kind.py) and its registry (registry.py), the steps kinds share (steps/), the
kinds (kinds/: consolidate, analyze, finalize_detach, index_fix, create_ahead, retention,
split, drain-default, fill-gaps) and
the findings' remedies."""

from .engine.model import Estimate, Lock, Plan, Statement, Step, VerificationFailed
from .engine.runner import (
    LockGaveUp,
    Outcome,
    PlanBusy,
    PlanCancelled,
    PlanError,
    PlanRunner,
    Progress,
    RunResult,
    RunState,
    StepOutcome,
    StepStatus,
)

__all__ = [
    "Estimate", "Lock", "LockGaveUp", "Outcome", "Plan", "PlanBusy", "PlanCancelled",
    "PlanError", "PlanRunner", "Progress", "RunResult", "RunState", "Statement", "Step",
    "StepOutcome", "StepStatus", "VerificationFailed",
]
