"""One file per schema revision, oldest first (``r0001_…``)."""
