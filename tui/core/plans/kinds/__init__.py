"""The plan kinds: each module declares one kind (policy) and composes the shared steps."""
