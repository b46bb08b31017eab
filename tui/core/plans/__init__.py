"""The plan engine (model, runner, journal) and the plans built on it (consolidation)."""

from .model import Estimate, Lock, Plan, Statement, Step, VerificationFailed
from .runner import (
    LockGaveUp,
    PlanBusy,
    PlanCancelled,
    PlanError,
    PlanRunner,
    Progress,
    RunResult,
    StepOutcome,
)

__all__ = [
    "Estimate", "Lock", "LockGaveUp", "Plan", "PlanBusy", "PlanCancelled", "PlanError",
    "PlanRunner", "Progress", "RunResult", "Statement", "Step", "StepOutcome",
    "VerificationFailed",
]
