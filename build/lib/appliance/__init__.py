"""On-prem ERP AI appliance: grounded answers about your ERP from a local LLM, with sources."""

__version__ = "0.1.0"
