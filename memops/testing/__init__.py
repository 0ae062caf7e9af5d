"""Test and benchmark support: the workload generator, a throwaway PostgreSQL cluster.

No product module imports this package."""
