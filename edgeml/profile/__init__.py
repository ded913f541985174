"""Latency profiling of artifacts: on the host (``host``) and, later, on a phone over adb."""
from edgeml.profile.host import ProfileReport, latency_stats, profile_artifact

__all__ = ["ProfileReport", "latency_stats", "profile_artifact"]
