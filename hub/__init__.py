"""The bus, the types that cross it, realtime fan-out, and (kept apart) the assembly."""
