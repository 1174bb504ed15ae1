"""A self-hosted, CodeDeploy-compatible deployment agent."""

__version__ = "0.1.0"
