"""Release packaging: the Triton model repository and the routing table, built from the registry."""

from qscore_tools.release.package import ReleaseError, ReleasePackage, package_release

__all__ = ["ReleaseError", "ReleasePackage", "package_release"]
