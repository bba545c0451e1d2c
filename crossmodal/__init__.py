"""crossmodal: crossmodal package."""
