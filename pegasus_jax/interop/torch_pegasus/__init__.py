"""Source of the modeling files written into an export's full/ folder (torch + transformers only)."""
