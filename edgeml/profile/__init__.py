"""Latency profiling of artifacts: on the host (``host``), on an Android phone over adb (``adb``),
several side by side (``compare``), across input sizes (``resolution``), and as charts (``plot``).

Phone profiling is described in README_adb.md next to this file.
"""
from edgeml.profile.host import ProfileReport, latency_stats, profile_artifact

__all__ = ["ProfileReport", "latency_stats", "profile_artifact"]
