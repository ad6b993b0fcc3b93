"""Asset metadata rendered for the UI: small tables and pictures as Markdown."""

import base64

import pandas as pd


def markdown_table(table: pd.DataFrame) -> str:
    """A small table as Markdown, for asset metadata."""
    lines = ["| " + " | ".join(table.columns) + " |", "|" + " --- |" * len(table.columns)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def image_markdown(title: str, png: bytes) -> str:
    """A PNG inlined as Markdown (the UI shows it in the asset's metadata)."""
    return f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"
