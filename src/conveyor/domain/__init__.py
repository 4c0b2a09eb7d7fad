"""Conveyor's vocabulary as plain data and pure rules: no I/O, no clocks, no databases."""
