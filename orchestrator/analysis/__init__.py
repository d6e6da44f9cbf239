"""Pure analysis over records: compare runs side by side, parameter importance, plots."""
