"""The AST backend (transformers): `ASTTagger.from_pretrained(hub_id_or_directory, fast=..., quantize=...)`."""

from audio.ast.tagger import ASTTagger

__all__ = ["ASTTagger"]
