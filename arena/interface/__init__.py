"""The interface for people: the command line, the demo, tables, pictures and annotated maps."""
