"""crossmodal: mappings package."""
