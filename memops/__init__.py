"""memops: deploy, probe, back up and rebuild the memory stack of AI agents."""

__version__ = "0.1.0"
