"""Demo data and private PostgreSQL servers: what `--demo`, the tests and the benchmarks run on.

Not part of the console's PostgreSQL knowledge (`tui.core`): nothing in pgparts imports this
package except the `--demo` entry point (`tui.context`); the layering contracts in
pyproject.toml hold it to that.

- ``localserver``: private, throwaway clusters (unix socket only, peer/scram authentication)
- ``seed``: the demo scenarios, generated on the server
- ``server``: the kept demo cluster, shared by the consoles that use it, and its watchdog
"""
