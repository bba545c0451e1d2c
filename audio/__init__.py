"""crossmodal: audio package."""
