"""Pure scheduling logic: sweep expansion and script rendering. No I/O here."""
