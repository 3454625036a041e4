"""Models run in-process with torch and transformers (imported only here)."""
