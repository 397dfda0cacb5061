"""psbridge: Dynamics 365 on-premises ↔ Exchange Online server-side sync, as a runbook."""

__version__ = "0.1.0"
