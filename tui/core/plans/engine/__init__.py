"""The plan engine: what a plan is (model), how it runs (runner), what it leaves (journal) and
how it reads for people (describe). It knows no plan kind."""
