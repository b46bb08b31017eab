"""The plan engine (model, runner, journal) and the plans built on it (consolidation)."""

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
