"""The city's rules as data: taxonomy, SLA clocks, routing, grids and staff, with their typed loader and masking.

Owns: the YAML files and their validation (an error names the file and the key), the taxonomy ids as enums,
and the masking of phone and ID numbers. Every rule that a street office may change lives here, once.
Must not: import anything of ours.
"""
