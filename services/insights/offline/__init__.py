"""insights' offline tooling: ``python -m services.insights loyalty fit|evaluate|simulate``
(docs/loyalty.md). The health score's fitting and checking against known outcomes, and
simulated histories with a known churn process. Run by hand or in a notebook, never by
the service: nothing in the running service imports this package."""
