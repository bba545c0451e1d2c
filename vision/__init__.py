"""crossmodal: vision package."""
