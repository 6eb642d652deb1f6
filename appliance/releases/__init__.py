"""Model lifecycle: versions registry, validation gate, scheduled zero-downtime swaps, probation."""

from appliance.releases.manager import ReleaseManager
from appliance.releases.registry import ModelVersion, Registry, ReleaseError

__all__ = ["ModelVersion", "Registry", "ReleaseError", "ReleaseManager"]
